package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// leads: the CRM intake benchmark (tests/load/bench.sh, BENCH_ONLY=crm).
// N WebSocket clients (one user's token, e.g. a manager's) subscribe to
// crm.leads; P partner clients post leads through an API key
// (POST /v1/crm/leads, X-API-Key) as fast as the server answers, for
// `seconds` seconds. Every lead gets a unique name carrying a sequence
// number; wsfan notes when it sent each POST, and each listener when the
// crm.lead.created event naming that lead arrived (one process, one
// monotonic clock). The listeners, their receive loop and the counting are
// fanout's (fanout.go); only the producer differs.

type leadsResult struct {
	Clients         int     `json:"clients"`
	Connected       int     `json:"connected"`
	ConnectFailed   int     `json:"connect_failed"`
	ConnectError    string  `json:"connect_error,omitempty"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	Subscribers     int     `json:"subscribers"`
	Posters         int     `json:"posters"`
	Seconds         int     `json:"seconds"`
	Posted          int     `json:"posted"`
	Accepted        int     `json:"accepted"`
	PostErrors      int     `json:"post_errors"`
	PostStatuses    string  `json:"post_statuses"`
	PostError       string  `json:"post_error,omitempty"`
	PostSeconds     float64 `json:"post_seconds"`
	AcceptedPerSec  float64 `json:"accepted_per_sec"`
	PostP50Ms       float64 `json:"post_p50_ms"`
	PostP99Ms       float64 `json:"post_p99_ms"`
	Events          int     `json:"events"`
	Expected        int64   `json:"expected"`
	Delivered       int64   `json:"delivered"`
	Lost            int64   `json:"lost"`
	LostPct         float64 `json:"lost_pct"`
	Duplicates      int64   `json:"duplicates"`
	Unknown         int64   `json:"unknown"`
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP99Ms    float64 `json:"latency_p99_ms"`
	LatencyMaxMs    float64 `json:"latency_max_ms"`
	LatencyP99AllMs float64 `json:"latency_p99_all_ms"`
	Dropped         int     `json:"dropped"`
	DropReasons     string  `json:"drop_reasons,omitempty"`
	ServerCPUPct    float64 `json:"server_cpu_pct"`
	ClientCPUPct    float64 `json:"client_cpu_pct"`
	RSSBeforeKiB    int64   `json:"rss_before_kib"`
	RSSAfterKiB     int64   `json:"rss_after_kib"`
}

// leadTarget: listeners authenticate with token and subscribe to topic in
// the auth frame; leads are posted with the API key.
type leadTarget struct {
	httpBase string
	token    string
	apiKey   string
	topic    string
	prefix   string // a lead's name is prefix + seq
	tag      string
}

func (t *leadTarget) handshake(c *websocket.Conn, deadline time.Time) error {
	auth, _ := json.Marshal(map[string]any{"type": "auth", "token": t.token, "topics": []string{t.topic}})
	return trellisAuth(c, auth, t.topic, deadline)
}

// The name is the one field that holds the prefix (the email is
// "p<seq>.<tag>@partner.example"), so each event frame carries its
// sequence number once.
func (t *leadTarget) marker() []byte      { return []byte(`"` + t.prefix) }
func (t *leadTarget) reply([]byte) []byte { return nil }
func (t *leadTarget) keepalive() []byte   { return []byte(`{"type":"ping"}`) }

// publish posts lead seq; it returns the HTTP status (0 when no answer).
// Every field has a fixed width, so every request is the same size.
func (t *leadTarget) post(hc *http.Client, seq int) (int, error) {
	body := fmt.Sprintf(`{"name":"%s%07d","email":"p%07d.%s@partner.example","phone":"+49 30 %07d",`+
		`"company":"Partner Lead GmbH","source":{"channel":"partner","campaign_id":null}}`,
		t.prefix, seq, seq, t.tag, seq)
	req, err := http.NewRequest(http.MethodPost, t.httpBase+"/v1/crm/leads", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-API-Key", t.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
	if resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, fmt.Errorf("POST /v1/crm/leads: %d %s", resp.StatusCode, strings.TrimSpace(string(text)))
	}
	if !bytes.Contains(text, []byte(fmt.Sprintf(`"%s%07d"`, t.prefix, seq))) {
		return resp.StatusCode, fmt.Errorf("POST /v1/crm/leads: 201 without the lead's name: %.200s", text)
	}
	return resp.StatusCode, nil
}

func (t *leadTarget) publish(hc *http.Client, seq int) error {
	_, err := t.post(hc, seq)
	return err
}

func runLeads(args []string) error {
	fs := flag.NewFlagSet("leads", flag.ExitOnError)
	wsURL := fs.String("ws", "", "WebSocket URL (ws://127.0.0.1:PORT/v1/ws)")
	httpBase := fs.String("http", "", "base URL of the HTTP API (http://127.0.0.1:PORT)")
	token := fs.String("token", "", "access token of the listeners (a user who may read crm.leads)")
	apiKey := fs.String("api-key", "", "API key with crm.leads.write the partners post with")
	topic := fs.String("topic", "crm.leads", "topic the listeners subscribe to")
	clients := fs.Int("clients", 500, "WebSocket listeners")
	posters := fs.Int("posters", 32, "partner clients posting leads concurrently, each one request at a time")
	seconds := fs.Int("seconds", 20, "posting time")
	maxLeads := fs.Int("max-leads", 200000, "stop posting after this many leads")
	dialers := fs.Int("dial-concurrency", 64, "connections being set up at once")
	pid := fs.Int("pid", 0, "server process id, for RSS and CPU (0: not measured)")
	postTimeout := fs.Duration("post-timeout", 120*time.Second, "a POST unanswered this long counts as failed")
	drain := fs.Duration("drain", 60*time.Second, "wait at most this long after the last POST for events still on the way (stops earlier once nothing arrives for 5 s)")
	keepalive := fs.Duration("keepalive", 25*time.Second, "interval of a listener's own pings")
	fs.Parse(args)

	if *clients < 1 || *posters < 1 || *seconds < 1 || *maxLeads < 1 {
		return errors.New("-clients, -posters, -seconds and -max-leads must be positive")
	}
	if *wsURL == "" || *httpBase == "" || *token == "" || *apiKey == "" {
		return errors.New("leads needs -ws, -http, -token and -api-key")
	}
	debug.SetGCPercent(400)
	tag := runTag()
	t := &leadTarget{httpBase: *httpBase, token: *token, apiKey: *apiKey, topic: *topic,
		prefix: "crmbench" + tag + "-", tag: tag}
	f := &fanout{t: t, base: time.Now(), total: *maxLeads, marker: t.marker()}
	f.sendAt = make([]atomic.Int64, f.total)
	res := leadsResult{Clients: *clients, Posters: *posters, Seconds: *seconds}
	res.RSSBeforeKiB = readRSS(*pid)

	// ---- listeners ----
	logf("leads: connecting %d listeners to %s (topic %s)", *clients, *wsURL, *topic)
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 512}
	all := make([]*client, *clients)
	var failed atomic.Int64
	var firstErr atomic.Value
	connStart := time.Now()
	next := atomic.Int64{}
	var dwg sync.WaitGroup
	for w := 0; w < *dialers; w++ {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *clients {
					return
				}
				cl, err := f.connectSparse(dialer, *wsURL)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				all[i] = cl
				f.wg.Add(1)
				go cl.read(f)
			}
		}()
	}
	dwg.Wait()
	res.ConnectSeconds = time.Since(connStart).Seconds()
	conns := make([]*client, 0, *clients)
	for _, cl := range all {
		if cl != nil {
			conns = append(conns, cl)
		}
	}
	res.Connected = len(conns)
	res.ConnectFailed = int(failed.Load())
	if e, ok := firstErr.Load().(string); ok {
		res.ConnectError = e
	}
	logf("%d listeners connected and subscribed in %.1fs, %d failed %s", res.Connected, res.ConnectSeconds, res.ConnectFailed, res.ConnectError)
	if res.Connected == 0 {
		printJSON(res)
		return errors.New("no listener could connect")
	}
	stopKeepalive := make(chan struct{})
	go f.keepalive(conns, t.keepalive(), *keepalive, stopKeepalive)
	time.Sleep(time.Second)
	res.Subscribers = countOpen(conns)

	// ---- partners: a closed loop each, for `seconds` ----
	hc := newHTTPClient(*posters, *postTimeout)
	var seqNext atomic.Int64
	postDur := make([]int64, f.total)
	postStatus := make([]int16, f.total)
	var postErr atomic.Value
	var pwg sync.WaitGroup
	cpuServer0, cpuClient0, wall0 := serverCPU(*pid), clientCPU(), time.Now()
	logf("%d partners posting leads for %ds", *posters, *seconds)
	pubStart := time.Now()
	stopAt := pubStart.Add(time.Duration(*seconds) * time.Second)
	for p := 0; p < *posters; p++ {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for time.Now().Before(stopAt) {
				seq := int(seqNext.Add(1) - 1)
				if seq >= f.total {
					return
				}
				at := f.now()
				f.sendAt[seq].Store(at)
				status, err := t.post(hc, seq)
				postDur[seq] = f.now() - at
				postStatus[seq] = int16(status)
				if err != nil {
					postErr.CompareAndSwap(nil, err.Error())
					if status == 201 {
						postStatus[seq] = -1 // 201 without the lead
					}
				}
			}
		}()
	}
	pwg.Wait()
	res.PostSeconds = time.Since(pubStart).Seconds()
	res.Posted = min(int(seqNext.Load()), f.total)
	statuses := map[string]int{}
	durs := make([]int64, 0, res.Posted)
	for seq := 0; seq < res.Posted; seq++ {
		switch s := postStatus[seq]; s {
		case 201:
			res.Accepted++
		case 0:
			statuses["no answer"]++
		case -1:
			statuses["201 without the lead"]++
		default:
			statuses[fmt.Sprintf("%d", s)]++
		}
		durs = append(durs, postDur[seq])
	}
	res.PostErrors = res.Posted - res.Accepted
	res.PostStatuses = describeCounts(statuses)
	if e, ok := postErr.Load().(string); ok {
		res.PostError = e
	}
	res.AcceptedPerSec = float64(res.Accepted) / res.PostSeconds
	if len(durs) > 0 {
		slices.Sort(durs)
		res.PostP50Ms = float64(durs[len(durs)/2]) / 1e6
		res.PostP99Ms = float64(durs[percentileIndex(len(durs), 0.99)]) / 1e6
	}
	logf("posted %d leads in %.1fs: %d accepted (%.0f/s), %d failed %s; POST p50 %.1f ms p99 %.1f ms",
		res.Posted, res.PostSeconds, res.Accepted, res.AcceptedPerSec, res.PostErrors, res.PostStatuses,
		res.PostP50Ms, res.PostP99Ms)

	// ---- drain ----
	want := int64(res.Posted) * int64(res.Subscribers)
	deadline := time.Now().Add(*drain)
	prev, lastMove := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		got := delivered(conns)
		if got >= want {
			break
		}
		if got != prev {
			prev, lastMove = got, time.Now()
		} else if time.Since(lastMove) >= 5*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wall := time.Since(wall0).Seconds()
	res.ServerCPUPct = 100 * (serverCPU(*pid) - cpuServer0) / wall
	res.ClientCPUPct = 100 * (clientCPU() - cpuClient0) / wall
	res.RSSAfterKiB = readRSS(*pid)

	close(stopKeepalive)
	f.stopping.Store(true)
	for _, cl := range conns {
		cl.wmu.Lock()
		cl.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		cl.wmu.Unlock()
		cl.conn.Close()
	}
	f.wg.Wait()

	// ---- count: every accepted lead (or one delivered although its POST
	// failed) is expected once at every listener ----
	reasons := map[string]int{}
	reached := make([]uint64, (f.total+63)/64)
	n := 0
	for _, cl := range conns {
		res.Delivered += int64(len(cl.lat))
		res.Duplicates += cl.dups
		res.Unknown += cl.unk
		n += len(cl.lat)
		if cl.err != "" {
			res.Dropped++
			reasons[cl.err]++
		}
		for w := range reached {
			reached[w] |= cl.seen[w]
		}
	}
	res.DropReasons = describeCounts(reasons)
	for seq := 0; seq < res.Posted; seq++ {
		if postStatus[seq] == 201 || reached[seq/64]&(uint64(1)<<(seq%64)) != 0 {
			res.Events++
		}
	}
	res.Expected = int64(res.Events) * int64(res.Subscribers)
	res.Lost = max(0, res.Expected-res.Delivered)
	if res.Expected > 0 {
		res.LostPct = 100 * float64(res.Lost) / float64(res.Expected)
	}
	res.LatencyP99AllMs = -1
	if n > 0 {
		lat := make([]int32, 0, n)
		for _, cl := range conns {
			lat = append(lat, cl.lat...)
			cl.lat = nil
		}
		slices.Sort(lat)
		res.LatencyP50Ms = float64(lat[len(lat)/2]) / 1000
		res.LatencyP99Ms = float64(lat[percentileIndex(len(lat), 0.99)]) / 1000
		res.LatencyMaxMs = float64(lat[len(lat)-1]) / 1000
		if i := percentileIndex(int(res.Expected), 0.99); i < len(lat) {
			res.LatencyP99AllMs = float64(lat[i]) / 1000
		}
	}
	logf("delivered %d of %d, lost %d (%.2f%%), duplicates %d; POST-to-event p50 %.1f ms p99 %.1f ms max %.1f ms (p99 counting lost: %.1f ms), %d dropped %s",
		res.Delivered, res.Expected, res.Lost, res.LostPct, res.Duplicates, res.LatencyP50Ms, res.LatencyP99Ms,
		res.LatencyMaxMs, res.LatencyP99AllMs, res.Dropped, res.DropReasons)
	return printJSON(res)
}

// connectSparse is fanout.connect without preallocating a latency slot per
// possible event: the number of leads is not known in advance, so each
// listener's latency list grows as events arrive.
func (f *fanout) connectSparse(d *websocket.Dialer, url string) (*client, error) {
	conn, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	if err := f.t.handshake(conn, time.Now().Add(30*time.Second)); err != nil {
		conn.Close()
		return nil, err
	}
	return &client{conn: conn, seen: make([]uint64, (f.total+63)/64), lat: make([]int32, 0, 1024)}, nil
}
