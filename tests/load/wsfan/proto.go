package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// A target is one server under test: how a client authenticates and
// subscribes, how an event is published, and how the load client finds
// the sequence number in a delivered frame. Everything else (dialling,
// reading, timing, counting) is shared, so both servers are measured by
// the same code.
type target interface {
	// handshake authenticates a freshly dialled connection and subscribes
	// it; it returns once the server has confirmed the subscription.
	handshake(c *websocket.Conn, deadline time.Time) error
	// marker precedes the decimal sequence number in a delivered event.
	marker() []byte
	// reply is what the client must send back after frame (a
	// server-initiated application ping), or nil.
	reply(frame []byte) []byte
	// keepalive is what the client sends on its own every keepalive
	// interval to stay connected, or nil.
	keepalive() []byte
	// publish produces the event carrying seq, through the server's own
	// write path.
	publish(hc *http.Client, seq int) error
}

// ---- Trellis ----

// trellis speaks the protocol of /v1/ws (shared/CONTRACT.md, "WebSocket
// push"). Events are produced with PATCH /v1/users/{id} {"name":
// "wsfan-<seq>"}; each PATCH emits one admin.users event whose data is the
// user resource, so the name carries the sequence number to the
// subscribers.
type trellis struct {
	httpBase string // http://127.0.0.1:PORT
	token    string
	userID   string
	topic    string
	prefix   string // the name is prefix + seq
}

func (t *trellis) handshake(c *websocket.Conn, deadline time.Time) error {
	auth, _ := json.Marshal(map[string]any{"type": "auth", "token": t.token, "topics": []string{t.topic}})
	return trellisAuth(c, auth, t.topic, deadline)
}

// trellisAuth sends an auth frame and waits for "subscribed" naming topic.
func trellisAuth(c *websocket.Conn, auth []byte, topic string, deadline time.Time) error {
	c.SetWriteDeadline(deadline)
	if err := c.WriteMessage(websocket.TextMessage, auth); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	c.SetWriteDeadline(time.Time{})
	c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for subscribed: %w", err)
		}
		var m struct {
			Type    string   `json:"type"`
			Topics  []string `json:"topics"`
			Code    string   `json:"code"`
			Message string   `json:"message"`
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			return fmt.Errorf("frame is not JSON: %.200s", msg)
		}
		switch m.Type {
		case "subscribed":
			for _, s := range m.Topics {
				if s == topic {
					return nil
				}
			}
			return fmt.Errorf("subscribed to %v, not %s", m.Topics, topic)
		case "error":
			return fmt.Errorf("server error %s: %s", m.Code, m.Message)
		}
	}
}

func (t *trellis) marker() []byte      { return []byte(`"` + t.prefix) }
func (t *trellis) reply([]byte) []byte { return nil }
func (t *trellis) keepalive() []byte   { return []byte(`{"type":"ping"}`) }

func (t *trellis) publish(hc *http.Client, seq int) error {
	return patchUserName(hc, t.httpBase, t.token, t.userID, fmt.Sprintf("%s%d", t.prefix, seq))
}

func patchUserName(hc *http.Client, base, token, userID, name string) error {
	body, _ := json.Marshal(map[string]string{"name": name})
	req, err := http.NewRequest(http.MethodPatch, base+"/v1/users/"+userID, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PATCH /v1/users/%s: %d %s", userID, resp.StatusCode, strings.TrimSpace(string(text)))
	}
	return nil
}

// jwtSubject returns the "sub" claim of a JWT without verifying it (the
// server issued it; the load client only needs the user id).
func jwtSubject(token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("the token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("JWT payload: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Sub == "" {
		return "", errors.New("the JWT has no sub claim")
	}
	return claims.Sub, nil
}

// ---- Centrifugo ----

// centrifugo speaks Centrifugo's JSON client protocol over
// /connection/websocket: a connect command with a connection JWT, then a
// subscribe command. Events are published with the server HTTP API
// (POST /api/publish, X-API-Key) as {"seq": N}. A reply frame may hold
// several newline-separated messages; an empty object is the server's
// ping, answered with an empty object.
type centrifugo struct {
	apiURL  string // http://127.0.0.1:PORT/api
	apiKey  string
	token   string
	channel string
}

type centrifugoReply struct {
	ID    int `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (t *centrifugo) handshake(c *websocket.Conn, deadline time.Time) error {
	connect, _ := json.Marshal(map[string]any{"id": 1, "connect": map[string]any{"token": t.token}})
	if err := t.command(c, connect, 1, deadline); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	subscribe, _ := json.Marshal(map[string]any{"id": 2, "subscribe": map[string]any{"channel": t.channel}})
	if err := t.command(c, subscribe, 2, deadline); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
}

// command sends one command and waits for the reply with its id.
func (t *centrifugo) command(c *websocket.Conn, cmd []byte, id int, deadline time.Time) error {
	c.SetWriteDeadline(deadline)
	if err := c.WriteMessage(websocket.TextMessage, cmd); err != nil {
		return err
	}
	c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	defer c.SetWriteDeadline(time.Time{})
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return err
		}
		for _, line := range bytes.Split(msg, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if bytes.Equal(line, []byte("{}")) {
				if err := c.WriteMessage(websocket.TextMessage, []byte("{}")); err != nil {
					return err
				}
				continue
			}
			var r centrifugoReply
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("reply is not JSON: %.200s", line)
			}
			if r.ID != id {
				continue
			}
			if r.Error != nil {
				return fmt.Errorf("error %d: %s", r.Error.Code, r.Error.Message)
			}
			return nil
		}
	}
}

func (t *centrifugo) marker() []byte    { return []byte(`"seq":`) }
func (t *centrifugo) keepalive() []byte { return nil }

var emptyObject = []byte("{}")

func (t *centrifugo) reply(frame []byte) []byte {
	// Cheap test first: pushes are long, pings are "{}" on a line of
	// their own (alone or batched with other messages).
	if !bytes.Contains(frame, emptyObject) {
		return nil
	}
	for _, line := range bytes.Split(frame, []byte("\n")) {
		if bytes.Equal(bytes.TrimSpace(line), emptyObject) {
			return emptyObject
		}
	}
	return nil
}

func (t *centrifugo) publish(hc *http.Client, seq int) error {
	body := fmt.Sprintf(`{"channel":%q,"data":{"seq":%d}}`, t.channel, seq)
	req, err := http.NewRequest(http.MethodPost, t.apiURL+"/publish", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-API-Key", t.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publish: %d %s", resp.StatusCode, strings.TrimSpace(string(text)))
	}
	var r centrifugoReply
	if err := json.Unmarshal(text, &r); err != nil {
		return fmt.Errorf("publish: answer is not JSON: %.200s", text)
	}
	if r.Error != nil {
		return fmt.Errorf("publish: error %d: %s", r.Error.Code, r.Error.Message)
	}
	return nil
}

// hs256 makes a connection JWT for Centrifugo signed with secret.
func hs256(secret, subject string, ttl time.Duration) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": subject, "exp": time.Now().Add(ttl).Unix()})
	signing := header + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// ---- shared ----

func newHTTPClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// closeCode describes why a connection ended.
func closeCode(err error) string {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Sprintf("close %d", ce.Code)
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
