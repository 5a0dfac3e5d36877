package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// resume (Trellis only): a client sees one event and goes away; N more
// events are produced; a new client connects with resume_from = the event
// it saw. Measured: from sending the auth frame until the N-th event
// frame arrives. Then every frame is checked: N events, each produced
// one exactly once, ids in increasing order.

type resumeResult struct {
	Events         int     `json:"events"`
	ProduceSeconds float64 `json:"produce_seconds"`
	ProducePerSec  float64 `json:"produce_per_sec"`
	ResumeFrom     string  `json:"resume_from"`
	Received       int     `json:"received"`
	Complete       bool    `json:"complete"`
	Problem        string  `json:"problem,omitempty"`
	FirstEventMs   float64 `json:"first_event_ms"`
	CatchupSeconds float64 `json:"catchup_seconds"`
	CatchupPerSec  float64 `json:"catchup_per_sec"`
	InOrder        bool    `json:"in_order"`
	Missing        int     `json:"missing"`
	Duplicates     int     `json:"duplicates"`
	Foreign        int     `json:"foreign"`
}

type eventFrame struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Topic string `json:"topic"`
	Data  struct {
		Name string `json:"name"`
	} `json:"data"`
	Reason string `json:"reason"`
	Code   string `json:"code"`
}

func runResume(args []string) error {
	fs := flag.NewFlagSet("resume", flag.ExitOnError)
	wsURL := fs.String("ws", "", "WebSocket URL, ws://127.0.0.1:PORT/v1/ws")
	httpBase := fs.String("http", "", "base URL of the HTTP API, http://127.0.0.1:PORT")
	token := fs.String("token", "", "access token")
	userID := fs.String("user-id", "", "user whose name is changed (default: the token's sub)")
	topic := fs.String("topic", "admin.users", "topic")
	events := fs.Int("events", 10000, "events to catch up on")
	publishers := fs.Int("publishers", 16, "PATCH requests in flight while producing")
	timeout := fs.Duration("timeout", 120*time.Second, "give up catching up after this long")
	fs.Parse(args)
	if *wsURL == "" || *httpBase == "" || *token == "" || *events < 1 {
		return errors.New("resume needs -ws, -http, -token and -events > 0")
	}
	uid := *userID
	if uid == "" {
		var err error
		if uid, err = jwtSubject(*token); err != nil {
			return err
		}
	}
	hc := newHTTPClient(*publishers, 30*time.Second)
	prefix := "wsres" + runTag() + "-"
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 65536}
	auth := func(resumeFrom string) []byte {
		m := map[string]any{"type": "auth", "token": *token, "topics": []string{*topic}}
		if resumeFrom != "" {
			m["resume_from"] = resumeFrom
		}
		b, _ := json.Marshal(m)
		return b
	}

	// ---- 1. see one event ----
	probe, _, err := dialer.Dial(*wsURL, nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	if err := trellisAuth(probe, auth(""), *topic, time.Now().Add(30*time.Second)); err != nil {
		return err
	}
	if err := patchUserName(hc, *httpBase, *token, uid, prefix+"probe"); err != nil {
		return err
	}
	var seen string
	probe.SetReadDeadline(time.Now().Add(30 * time.Second))
	for seen == "" {
		_, msg, err := probe.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for the probe event: %w", err)
		}
		var ev eventFrame
		if json.Unmarshal(msg, &ev) == nil && ev.Type == "event" && ev.Data.Name == prefix+"probe" {
			seen = ev.ID
		}
	}
	probe.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	probe.Close()
	res := resumeResult{Events: *events, ResumeFrom: seen}
	logf("saw event %s; producing %d events with %d PATCH requests in flight", seen, *events, *publishers)

	// ---- 2. produce N events while nobody listens ----
	start := time.Now()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < *publishers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= *events || failed.Load() != nil {
					return
				}
				if err := patchUserName(hc, *httpBase, *token, uid, prefix+strconv.Itoa(k)); err != nil {
					failed.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return fmt.Errorf("producing events: %w", err)
	}
	res.ProduceSeconds = time.Since(start).Seconds()
	res.ProducePerSec = float64(*events) / res.ProduceSeconds
	logf("produced %d events in %.1fs (%.0f/s); resuming from %s", *events, res.ProduceSeconds, res.ProducePerSec, seen)

	// ---- 3. resume and time the catch-up ----
	conn, _, err := dialer.Dial(*wsURL, nil)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	frames := make([][]byte, 0, *events)
	marker := []byte(`"type":"event"`)
	conn.SetReadDeadline(time.Now().Add(*timeout))
	t0 := time.Now()
	if err := conn.WriteMessage(websocket.TextMessage, auth(seen)); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	for len(frames) < *events {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			res.Problem = "connection: " + closeCode(err)
			break
		}
		if bytes.Contains(msg, marker) {
			if len(frames) == 0 {
				res.FirstEventMs = float64(time.Since(t0).Microseconds()) / 1000
			}
			frames = append(frames, msg)
			continue
		}
		// Anything else is checked now: it is rare and may end the run.
		var f eventFrame
		if json.Unmarshal(msg, &f) != nil {
			res.Problem = fmt.Sprintf("frame is not JSON: %.100s", msg)
			break
		}
		if f.Type == "resync_required" || f.Type == "error" {
			res.Problem = fmt.Sprintf("%s %s%s", f.Type, f.Reason, f.Code)
			break
		}
	}
	elapsed := time.Since(t0)
	res.Received = len(frames)
	res.Complete = len(frames) == *events
	if res.Complete {
		res.CatchupSeconds = elapsed.Seconds()
		res.CatchupPerSec = float64(*events) / res.CatchupSeconds
	} else if res.Problem == "" {
		res.Problem = "timed out"
	}
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))

	// ---- 4. check what arrived ----
	got := make([]int, *events)
	res.InOrder = true
	var prev [2]uint64
	for i, msg := range frames {
		var ev eventFrame
		if err := json.Unmarshal(msg, &ev); err != nil {
			res.Foreign++
			continue
		}
		id, ok := parseEventID(ev.ID)
		if !ok || (i > 0 && !idLess(prev, id)) {
			res.InOrder = false
		}
		prev = id
		k, err := strconv.Atoi(strings.TrimPrefix(ev.Data.Name, prefix))
		if !strings.HasPrefix(ev.Data.Name, prefix) || err != nil || k < 0 || k >= *events || ev.Topic != *topic {
			res.Foreign++
			continue
		}
		got[k]++
	}
	for _, n := range got {
		if n == 0 {
			res.Missing++
		} else if n > 1 {
			res.Duplicates += n - 1
		}
	}
	if res.Complete && (res.Missing > 0 || res.Duplicates > 0 || res.Foreign > 0 || !res.InOrder) {
		res.Problem = fmt.Sprintf("%d missing, %d duplicated, %d other events, in order: %v",
			res.Missing, res.Duplicates, res.Foreign, res.InOrder)
	}
	logf("caught up on %d/%d events in %.2fs (%.0f/s), first after %.1f ms %s",
		res.Received, *events, elapsed.Seconds(), res.CatchupPerSec, res.FirstEventMs, res.Problem)
	return printJSON(res)
}

// parseEventID splits a Redis Stream id "<ms>-<seq>".
func parseEventID(s string) ([2]uint64, bool) {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return [2]uint64{}, false
	}
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(seq, 10, 64)
	return [2]uint64{a, b}, err1 == nil && err2 == nil
}

func idLess(a, b [2]uint64) bool { return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1]) }
