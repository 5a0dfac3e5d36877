package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// fanout: N clients subscribe to one topic; the load client publishes
// `rate` events per second for `seconds` seconds through the server's own
// write path, records when it sent each sequence number, and each
// subscriber records when the event carrying it arrived (one process, one
// monotonic clock).

type fanoutResult struct {
	Target          string  `json:"target"`
	Clients         int     `json:"clients"`
	Connected       int     `json:"connected"`
	ConnectFailed   int     `json:"connect_failed"`
	ConnectError    string  `json:"connect_error,omitempty"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	RSSBeforeKiB    int64   `json:"rss_before_kib"`
	RSSIdleKiB      int64   `json:"rss_idle_kib"`
	RSSAfterKiB     int64   `json:"rss_after_kib"`
	RSSPerConnBytes float64 `json:"rss_per_conn_bytes"`
	IdleDropped     int     `json:"idle_dropped"`
	Subscribers     int     `json:"subscribers"`
	Seconds         int     `json:"seconds"`
	Rate            int     `json:"rate"`
	Published       int     `json:"published"`
	PublishErrors   int     `json:"publish_errors"`
	PublishError    string  `json:"publish_error,omitempty"`
	PublishSeconds  float64 `json:"publish_seconds"`
	PublishedPerSec float64 `json:"published_per_sec"`
	PublishP50Ms    float64 `json:"publish_p50_ms"`
	PublishP99Ms    float64 `json:"publish_p99_ms"`
	Events          int     `json:"events"`
	Expected        int64   `json:"expected"`
	Delivered       int64   `json:"delivered"`
	Lost            int64   `json:"lost"`
	LostPct         float64 `json:"lost_pct"`
	Duplicates      int64   `json:"duplicates"`
	Unknown         int64   `json:"unknown"`
	DeliverySeconds float64 `json:"delivery_seconds"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	LatencyP50Ms    float64 `json:"latency_p50_ms"`
	LatencyP99Ms    float64 `json:"latency_p99_ms"`
	LatencyMaxMs    float64 `json:"latency_max_ms"`
	LatencyP99AllMs float64 `json:"latency_p99_all_ms"`
	Dropped         int     `json:"dropped"`
	DropReasons     string  `json:"drop_reasons,omitempty"`
	ServerCPUPct    float64 `json:"server_cpu_pct"`
	ClientCPUPct    float64 `json:"client_cpu_pct"`
}

type client struct {
	conn *websocket.Conn
	wmu  sync.Mutex // one writer at a time: keepalive and ping replies
	seen []uint64   // bit per sequence number
	lat  []int32    // publish-to-receive, microseconds, first receipt only
	n    atomic.Int64
	last atomic.Int64 // ns since base of the latest receipt
	gone atomic.Bool  // the connection ended before the run did
	dups int64
	unk  int64
	err  string
}

type fanout struct {
	t        target
	base     time.Time
	total    int
	sendAt   []atomic.Int64 // ns since base, 0 = not sent
	stopping atomic.Bool
	marker   []byte
	wg       sync.WaitGroup
}

func (f *fanout) now() int64 { return int64(time.Since(f.base)) }

func runFanout(args []string) error {
	fs := flag.NewFlagSet("fanout", flag.ExitOnError)
	targetName := fs.String("target", "", "trellis or centrifugo")
	wsURL := fs.String("ws", "", "WebSocket URL (ws://127.0.0.1:PORT/v1/ws, or .../connection/websocket)")
	httpBase := fs.String("http", "", "trellis: base URL of the HTTP API (http://127.0.0.1:PORT)")
	token := fs.String("token", "", "trellis: access token (the clients share it; the publisher uses it too)")
	userID := fs.String("user-id", "", "trellis: user whose name the publisher changes (default: the token's sub)")
	topic := fs.String("topic", "admin.users", "trellis: topic to subscribe to")
	apiURL := fs.String("api", "", "centrifugo: server API URL (http://127.0.0.1:PORT/api)")
	apiKey := fs.String("api-key", "", "centrifugo: server API key")
	secret := fs.String("hmac-secret", "", "centrifugo: HMAC secret for the connection JWT")
	channel := fs.String("channel", "bench:fan", "centrifugo: channel to subscribe to")
	clients := fs.Int("clients", 10000, "subscribers")
	seconds := fs.Int("seconds", 30, "publishing time")
	rate := fs.Int("rate", 100, "events per second")
	dialers := fs.Int("dial-concurrency", 64, "connections being set up at once")
	inflight := fs.Int("publishers", 1024, "publish requests in flight at most (high, so that a slow publish path delays events instead of thinning the schedule)")
	pid := fs.Int("pid", 0, "server process id, for RSS and CPU (0: not measured)")
	idle := fs.Duration("idle", 5*time.Second, "wait with every client subscribed before reading idle RSS")
	pubTimeout := fs.Duration("publish-timeout", 120*time.Second, "a publish request unanswered this long counts as failed")
	drain := fs.Duration("drain", 60*time.Second, "wait at most this long after the last publish for deliveries still on the way (stops earlier once nothing arrives for 5 s)")
	keepalive := fs.Duration("keepalive", 25*time.Second, "interval of a client's own pings (trellis)")
	fs.Parse(args)

	if *clients < 1 || *seconds < 1 || *rate < 1 {
		return errors.New("-clients, -seconds and -rate must be positive")
	}
	var t target
	switch *targetName {
	case "trellis":
		if *wsURL == "" || *httpBase == "" || *token == "" {
			return errors.New("trellis needs -ws, -http and -token")
		}
		uid := *userID
		if uid == "" {
			var err error
			if uid, err = jwtSubject(*token); err != nil {
				return err
			}
		}
		t = &trellis{httpBase: *httpBase, token: *token, userID: uid, topic: *topic, prefix: "wsfan" + runTag() + "-"}
	case "centrifugo":
		if *wsURL == "" || *apiURL == "" || *apiKey == "" || *secret == "" {
			return errors.New("centrifugo needs -ws, -api, -api-key and -hmac-secret")
		}
		t = &centrifugo{apiURL: *apiURL, apiKey: *apiKey, token: hs256(*secret, "wsfan", 2*time.Hour), channel: *channel}
	default:
		return errors.New("-target must be trellis or centrifugo")
	}
	// 10,000 readers allocate little but often; fewer collections leave
	// more of the two cores to the server.
	debug.SetGCPercent(400)

	f := &fanout{t: t, base: time.Now(), total: *seconds * *rate, marker: t.marker()}
	f.sendAt = make([]atomic.Int64, f.total)
	res := fanoutResult{Target: *targetName, Clients: *clients, Seconds: *seconds, Rate: *rate}

	res.RSSBeforeKiB = readRSS(*pid)

	// ---- connect and subscribe every client ----
	logf("%s: connecting %d clients to %s", *targetName, *clients, *wsURL)
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
				cl, err := f.connect(dialer, *wsURL)
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
	// progress every 5 s while connecting
	done := make(chan struct{})
	go func() {
		tk := time.NewTicker(5 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				logf("  %d/%d dialled, %d failed", next.Load(), *clients, failed.Load())
			}
		}
	}()
	dwg.Wait()
	close(done)
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
	logf("%d connected and subscribed in %.1fs, %d failed %s", res.Connected, res.ConnectSeconds, res.ConnectFailed, res.ConnectError)
	if res.Connected == 0 {
		printJSON(res)
		return errors.New("no client could connect")
	}

	// ---- idle: memory per connection ----
	stopKeepalive := make(chan struct{})
	if ka := t.keepalive(); ka != nil {
		go f.keepalive(conns, ka, *keepalive, stopKeepalive)
	}
	time.Sleep(*idle)
	res.RSSIdleKiB = readRSS(*pid)
	res.Subscribers = countOpen(conns)
	res.IdleDropped = res.Connected - res.Subscribers
	if res.RSSBeforeKiB > 0 && res.RSSIdleKiB > 0 {
		res.RSSPerConnBytes = float64(res.RSSIdleKiB-res.RSSBeforeKiB) * 1024 / float64(res.Connected)
	}
	logf("idle %.0fs: RSS %d -> %d KiB, %.0f bytes per connection", idle.Seconds(), res.RSSBeforeKiB, res.RSSIdleKiB, res.RSSPerConnBytes)

	// ---- publish at the target rate ----
	hc := newHTTPClient(*inflight, *pubTimeout)
	sem := make(chan struct{}, *inflight)
	var pubErrs atomic.Int64
	var pubErr atomic.Value
	pubDur := make([]int64, f.total)
	pubFailed := make([]bool, f.total)
	var pwg sync.WaitGroup
	cpuServer0, cpuClient0, wall0 := serverCPU(*pid), clientCPU(), time.Now()
	logf("publishing %d events/s for %ds (%d events)", *rate, *seconds, f.total)
	pubStart := time.Now()
	interval := time.Second / time.Duration(*rate)
	for seq := 0; seq < f.total; seq++ {
		if d := time.Until(pubStart.Add(time.Duration(seq) * interval)); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		pwg.Add(1)
		go func(seq int) {
			defer func() { <-sem; pwg.Done() }()
			at := f.now()
			f.sendAt[seq].Store(at)
			if err := t.publish(hc, seq); err != nil {
				pubFailed[seq] = true
				pubErrs.Add(1)
				pubErr.CompareAndSwap(nil, err.Error())
			}
			pubDur[seq] = f.now() - at
		}(seq)
	}
	pwg.Wait()
	res.PublishSeconds = time.Since(pubStart).Seconds()
	res.PublishErrors = int(pubErrs.Load())
	if e, ok := pubErr.Load().(string); ok {
		res.PublishError = e
	}
	res.Published = f.total - res.PublishErrors
	res.PublishedPerSec = float64(res.Published) / res.PublishSeconds
	slices.Sort(pubDur)
	res.PublishP50Ms = float64(pubDur[len(pubDur)/2]) / 1e6
	res.PublishP99Ms = float64(pubDur[percentileIndex(len(pubDur), 0.99)]) / 1e6
	logf("published %d in %.1fs (%d errors %s); waiting up to %.0fs for deliveries",
		res.Published, res.PublishSeconds, res.PublishErrors, res.PublishError, drain.Seconds())
	lastSend := int64(0)
	for i := range f.sendAt {
		lastSend = max(lastSend, f.sendAt[i].Load())
	}
	// Until the deliveries are counted, every event published counts;
	// the drain waits for at most that many.
	want := int64(f.total) * int64(res.Subscribers)

	// ---- drain: until everything expected arrived, or nothing moves ----
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

	// ---- stop and count ----
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

	var lastRecv int64
	reasons := map[string]int{}
	n := 0
	reached := make([]uint64, (f.total+63)/64) // events some client received
	for _, cl := range conns {
		res.Delivered += int64(len(cl.lat))
		res.Duplicates += cl.dups
		res.Unknown += cl.unk
		n += len(cl.lat)
		lastRecv = max(lastRecv, cl.last.Load())
		if cl.err != "" {
			res.Dropped++
			reasons[cl.err]++
		}
		for w := range reached {
			reached[w] |= cl.seen[w]
		}
	}
	res.DropReasons = describeCounts(reasons)
	// An event exists when the server accepted its publish, or when it
	// reached a client although its publish request failed (a timeout on
	// the client's side, say). Every subscriber should get each.
	for seq := 0; seq < f.total; seq++ {
		if !pubFailed[seq] || reached[seq/64]&(uint64(1)<<(seq%64)) != 0 {
			res.Events++
		}
	}
	res.Expected = int64(res.Events) * int64(res.Subscribers)
	res.Lost = max(0, res.Expected-res.Delivered)
	if res.Expected > 0 {
		res.LostPct = 100 * float64(res.Lost) / float64(res.Expected)
	}
	// Delivered per second over the time the load was on: from the first
	// publish until the last publish or the last receipt, whichever is
	// later (a server that stops delivering early is not timed on its
	// short good start alone).
	firstSend := f.sendAt[0].Load()
	if end := max(lastRecv, lastSend); res.Delivered > 0 && end > firstSend {
		res.DeliverySeconds = float64(end-firstSend) / 1e9
		res.DeliveredPerSec = float64(res.Delivered) / res.DeliverySeconds
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
		// The same p99 over every (client, event) pair expected, an
		// undelivered one counting as never arriving: -1 when more than
		// 1% never arrived.
		if i := percentileIndex(int(res.Expected), 0.99); i < len(lat) {
			res.LatencyP99AllMs = float64(lat[i]) / 1000
		}
	}
	logf("delivered %d of %d (%.0f/s over %.1fs), latency p50 %.1f ms p99 %.1f ms max %.1f ms (p99 counting lost: %.1f ms), %d dropped %s",
		res.Delivered, res.Expected, res.DeliveredPerSec, res.DeliverySeconds,
		res.LatencyP50Ms, res.LatencyP99Ms, res.LatencyMaxMs, res.LatencyP99AllMs, res.Dropped, res.DropReasons)
	return printJSON(res)
}

func (f *fanout) connect(d *websocket.Dialer, url string) (*client, error) {
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
	return &client{
		conn: conn,
		seen: make([]uint64, (f.total+63)/64),
		lat:  make([]int32, 0, f.total),
	}, nil
}

// read is a client's receive loop: it reads each frame into one reused
// buffer and looks only for the sequence numbers after the marker.
func (cl *client) read(f *fanout) {
	defer f.wg.Done()
	buf := make([]byte, 0, 2048)
	for {
		_, r, err := cl.conn.NextReader()
		if err == nil {
			buf, err = readInto(buf[:0], r)
		}
		if err != nil {
			if !f.stopping.Load() {
				cl.err = closeCode(err)
				cl.gone.Store(true)
			}
			return
		}
		now := f.now()
		got := cl.scan(f, buf, now)
		if got > 0 {
			cl.n.Add(int64(got))
			cl.last.Store(now)
		}
		if rep := f.t.reply(buf); rep != nil {
			cl.wmu.Lock()
			cl.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			cl.conn.WriteMessage(websocket.TextMessage, rep)
			cl.wmu.Unlock()
		}
	}
}

// scan records every sequence number in frame; returns how many were new.
func (cl *client) scan(f *fanout, frame []byte, now int64) int {
	got := 0
	for {
		i := bytes.Index(frame, f.marker)
		if i < 0 {
			return got
		}
		j := i + len(f.marker)
		seq, k := 0, j
		for k < len(frame) && frame[k] >= '0' && frame[k] <= '9' && k-j < 9 {
			seq = seq*10 + int(frame[k]-'0')
			k++
		}
		frame = frame[k:]
		if k == j {
			continue
		}
		if seq >= f.total {
			cl.unk++
			continue
		}
		sent := f.sendAt[seq].Load()
		if sent == 0 {
			cl.unk++
			continue
		}
		w, bit := seq/64, uint64(1)<<(seq%64)
		if cl.seen[w]&bit != 0 {
			cl.dups++
			continue
		}
		cl.seen[w] |= bit
		cl.lat = append(cl.lat, int32((now-sent)/1000))
		got++
	}
}

// keepalive sends each open connection ping every interval, spread evenly.
func (f *fanout) keepalive(conns []*client, ping []byte, interval time.Duration, stop chan struct{}) {
	step := interval / time.Duration(len(conns))
	tk := time.NewTicker(max(step, time.Microsecond))
	defer tk.Stop()
	for i := 0; ; i = (i + 1) % len(conns) {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		cl := conns[i]
		cl.wmu.Lock()
		cl.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		cl.conn.WriteMessage(websocket.TextMessage, ping)
		cl.wmu.Unlock()
	}
}

func readInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func delivered(conns []*client) int64 {
	var s int64
	for _, cl := range conns {
		s += cl.n.Load()
	}
	return s
}

// countOpen: connections still open.
func countOpen(conns []*client) int {
	n := 0
	for _, cl := range conns {
		if !cl.gone.Load() {
			n++
		}
	}
	return n
}

func percentileIndex(n int, p float64) int {
	i := int(float64(n)*p+0.5) - 1
	return min(max(i, 0), n-1)
}

func describeCounts(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d x %s", m[k], k)
	}
	return b.String()
}

func runTag() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
