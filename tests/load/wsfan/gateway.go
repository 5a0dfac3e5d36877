package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The partner gateway's figures (bench.sh section `gateway`):
//
//	gw-hooks    leads created through the API at a steady rate while one
//	            webhook of the tenant subscribes to crm.leads; a receiver in
//	            this process answers a share of the deliveries 500 (chosen
//	            by a seeded generator) and times each event from the POST's
//	            201 to its first successful delivery
//
// The changes feed's modes are in gateway_feed.go.

type hooksResult struct {
	Rate            int     `json:"rate"`
	Seconds         int     `json:"seconds"`
	FailPct         float64 `json:"fail_pct"`
	Seed            uint64  `json:"seed"`
	Posted          int     `json:"posted"`
	Accepted        int     `json:"accepted"`
	AcceptedPerSec  float64 `json:"accepted_per_sec"`
	PostErrors      int     `json:"post_errors"`
	PostStatuses    string  `json:"post_statuses,omitempty"`
	PostError       string  `json:"post_error,omitempty"`
	PostP50Ms       float64 `json:"post_p50_ms"`
	PostP99Ms       float64 `json:"post_p99_ms"`
	StartLagMaxMs   float64 `json:"start_lag_max_ms"`      // how late a POST left against its schedule, at worst
	Delivered       int     `json:"delivered"`             // accepted leads whose event the receiver took (2xx)
	Lost            int     `json:"lost"`                  // accepted leads never delivered after the drain
	DeadJobs        int     `json:"dead_jobs"`             // the tenant's jobs out of attempts (GET /v1/jobs?state=dead)
	Duplicates      int     `json:"duplicates"`            // successful deliveries of an event already taken
	Unknown         int     `json:"unknown"`               // deliveries naming no lead of this run
	Requests        int64   `json:"requests"`              // every request the receiver got
	Failed          int64   `json:"failed"`                // answered 500 on purpose
	Attempts1       int     `json:"first_attempt"`         // delivered at the first attempt
	DeliveredPerSec float64 `json:"delivered_per_sec"`     // over the posting window
	AllPerSec       float64 `json:"delivered_all_per_sec"` // all delivered / (last delivery - first POST)
	LatP50Ms        float64 `json:"latency_p50_ms"`        // 201 -> successful delivery
	LatP99Ms        float64 `json:"latency_p99_ms"`
	LatMaxMs        float64 `json:"latency_max_ms"`
	LatP99AllMs     float64 `json:"latency_p99_all_ms"` // lost counted as later than any; -1 over 1% lost
	BeforeCreated   int     `json:"before_201"`         // deliveries that came before the POST's answer
	SentP50Ms       float64 `json:"sent_p50_ms"`        // POST sent -> successful delivery
	SentP99Ms       float64 `json:"sent_p99_ms"`
	DrainSeconds    float64 `json:"drain_seconds"` // after the last POST, until all were in or the drain ended
	ServerCPUPct    float64 `json:"server_cpu_pct"`
	ClientCPUPct    float64 `json:"client_cpu_pct"`
	BadSignatures   int64   `json:"missing_headers"` // deliveries without the Standard Webhooks headers
	// -replay: POST /v1/webhooks/{id}/replay {"since": "0-0"} once the drain
	// is over, every event of the run delivered again at once
	Replayed        int     `json:"replayed"`         // what the replay's 202 says it enqueued
	ReplayDelivered int     `json:"replay_delivered"` // the run's leads delivered again
	ReplayPerSec    float64 `json:"replay_per_sec"`   // ... / (the last of them - the replay's POST)
	ReplaySeconds   float64 `json:"replay_seconds"`
	ReplayExtra     int     `json:"replay_duplicates"` // delivered more than once by the replay
	ReplayServerCPU float64 `json:"replay_server_cpu_pct"`
	ReplayOtherCPU  string  `json:"replay_other_cpu,omitempty"`
	cpuFigures
}

// hookLead is one lead of the run: when its POST left, when the 201 came,
// when the receiver first took its event (ns since base; 0 = not yet).
type hookLead struct {
	sent, created, delivered atomic.Int64
	attempts                 atomic.Int32
	accepted                 atomic.Bool
}

type hookRun struct {
	base    time.Time
	prefix  string
	leads   []hookLead
	failPct float64

	mu     sync.Mutex
	rng    *rand.Rand
	unique int // events delivered, for the drain's check

	replaying                        atomic.Bool
	replayed                         []atomic.Int64 // per lead, when the replay delivered it
	replayN, replayExtra, replayLast atomic.Int64

	requests, failed, missing atomic.Int64
	duplicates, unknown       atomic.Int64
	firstOK, lastOK           atomic.Int64
}

func (h *hookRun) now() int64 { return int64(time.Since(h.base)) }

// receive is the webhook endpoint: a seeded share of requests get 500;
// the rest are taken, the lead named in the event's data found by its
// name.
func (h *hookRun) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	now := h.now()
	h.requests.Add(1)
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	if r.Header.Get("webhook-id") == "" || r.Header.Get("webhook-signature") == "" ||
		r.Header.Get("webhook-timestamp") == "" {
		h.missing.Add(1)
	}
	var ev struct {
		Event string `json:"event"`
		Data  struct {
			Name string `json:"name"`
		} `json:"data"`
	}
	seq := -1
	if json.Unmarshal(body, &ev) == nil && strings.HasPrefix(ev.Data.Name, h.prefix) {
		if n, err := strconv.Atoi(ev.Data.Name[len(h.prefix):]); err == nil && n >= 0 && n < len(h.leads) {
			seq = n
		}
	}
	h.mu.Lock()
	fail := h.failPct > 0 && h.rng.Float64()*100 < h.failPct
	h.mu.Unlock()
	if seq >= 0 {
		h.leads[seq].attempts.Add(1)
	}
	if fail {
		h.failed.Add(1)
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	if seq < 0 || ev.Event != "crm.lead.created" {
		h.unknown.Add(1)
		return
	}
	if h.replaying.Load() {
		if !h.replayed[seq].CompareAndSwap(0, now) {
			h.replayExtra.Add(1)
			return
		}
		h.replayN.Add(1)
		for {
			last := h.replayLast.Load()
			if now <= last || h.replayLast.CompareAndSwap(last, now) {
				break
			}
		}
		return
	}
	if !h.leads[seq].delivered.CompareAndSwap(0, now) {
		h.duplicates.Add(1)
		return
	}
	h.firstOK.CompareAndSwap(0, now)
	for {
		last := h.lastOK.Load()
		if now <= last || h.lastOK.CompareAndSwap(last, now) {
			break
		}
	}
	h.mu.Lock()
	h.unique++
	h.mu.Unlock()
}

func runGwHooks(args []string) error {
	fs := flag.NewFlagSet("gw-hooks", flag.ExitOnError)
	httpBase := fs.String("http", "", "the server's base URL (http://127.0.0.1:PORT)")
	token := fs.String("token", "", "an owner's access token of the tenant")
	rate := fs.Int("rate", 50, "leads created per second")
	seconds := fs.Int("seconds", 30, "seconds leads are created for")
	failPct := fs.Float64("fail-pct", 10, "share of deliveries the receiver answers 500, percent")
	seed := fs.Uint64("seed", 1, "seed of the generator choosing the failed deliveries")
	drain := fs.Duration("drain", 40*time.Second, "longest wait after the last POST for deliveries still due")
	posters := fs.Int("posters", 64, "POSTs in flight at most")
	pid := fs.Int("pid", 0, "server pid, for its CPU")
	cpuPids := fs.String("cpu-pids", "", "name=pid,... other processes whose CPU is reported over the run")
	replay := fs.Bool("replay", false, "after the drain, replay every event of the run at once and time the deliveries")
	fs.Parse(args)
	if *httpBase == "" || *token == "" || *rate < 1 || *seconds < 1 || *failPct < 0 || *failPct > 100 {
		return errors.New("-http, -token, -rate >= 1, -seconds >= 1 and 0 <= -fail-pct <= 100 are required")
	}
	n := *rate * *seconds
	h := &hookRun{base: time.Now(), prefix: "gw" + runTag() + "-", leads: make([]hookLead, n),
		replayed: make([]atomic.Int64, n),
		failPct:  *failPct, rng: rand.New(rand.NewPCG(*seed, 0x9e3779b97f4a7c15))}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", h.receive)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	url := fmt.Sprintf("http://%s/hook", ln.Addr())

	api := &erpAPI{base: *httpBase, token: *token, hc: newHTTPClient(*posters, 30*time.Second)}
	var hook struct {
		ID string `json:"id"`
	}
	if err := api.must("POST", "/v1/webhooks", map[string]any{"url": url, "topics": []string{"crm.leads"},
		"description": "bench receiver"}, 201, &hook); err != nil {
		return err
	}
	logf("webhook %s -> %s; %d leads at %d/s, %.0f%% of deliveries answered 500 (seed %d)",
		hook.ID, url, n, *rate, *failPct, *seed)

	var (
		mu        sync.Mutex
		statuses  = map[string]int{}
		firstErr  string
		postTimes []float64
		lagMax    atomic.Int64
	)
	work := make(chan int, n)
	var wg sync.WaitGroup
	for w := 0; w < *posters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range work {
				l := &h.leads[seq]
				l.sent.Store(h.now())
				body := fmt.Sprintf(`{"name":"%s%07d","email":"g%07d@hooks.example","phone":"+49 30 %07d",`+
					`"company":"Gateway Lead GmbH","source":{"channel":"partner","campaign_id":null}}`,
					h.prefix, seq, seq, seq)
				status, text, err := api.call("POST", "/v1/crm/leads", []byte(body), "")
				done := h.now()
				if err == nil && status == 201 {
					l.created.Store(done)
					l.accepted.Store(true)
					mu.Lock()
					postTimes = append(postTimes, float64(done-l.sent.Load())/1e6)
					mu.Unlock()
					continue
				}
				mu.Lock()
				key := fmt.Sprint(status)
				if err != nil {
					key = "no answer"
				}
				statuses[key]++
				if firstErr == "" {
					if err != nil {
						firstErr = err.Error()
					} else {
						firstErr = fmt.Sprintf("%d %.200s", status, bytes.TrimSpace(text))
					}
				}
				mu.Unlock()
			}
		}()
	}

	cpu0, server0, client0, wall0 := takeCPU(*cpuPids), serverCPU(*pid), clientCPU(), time.Now()
	start := h.now()
	interval := float64(time.Second) / float64(*rate)
	for seq := 0; seq < n; seq++ {
		due := start + int64(float64(seq)*interval)
		if d := due - h.now(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		if lag := h.now() - due; lag > lagMax.Load() {
			lagMax.Store(lag)
		}
		work <- seq
		if seq > 0 && seq%(*rate*5) == 0 {
			logf("%d leads posted, %d events delivered", seq, h.delivered())
		}
	}
	close(work)
	wg.Wait()
	postsEnd := h.now()

	accepted := 0
	for i := range h.leads {
		if h.leads[i].accepted.Load() {
			accepted++
		}
	}
	logf("all %d POSTs answered (%d accepted); draining up to %s", n, accepted, *drain)
	drainEnd := time.Now().Add(*drain)
	for time.Now().Before(drainEnd) && h.deliveredAccepted() < accepted {
		time.Sleep(50 * time.Millisecond)
	}
	end := h.now()
	wall := time.Since(wall0).Seconds()
	var dead struct {
		Items []json.RawMessage `json:"items"`
	}
	deadErr := api.must("GET", "/v1/jobs?state=dead", nil, 200, &dead)

	res := hooksResult{Rate: *rate, Seconds: *seconds, FailPct: *failPct, Seed: *seed, Posted: n,
		Accepted: accepted, AcceptedPerSec: float64(accepted) / (float64(postsEnd-start) / 1e9),
		PostErrors: n - accepted, PostStatuses: describeCounts(statuses), PostError: firstErr,
		StartLagMaxMs: float64(lagMax.Load()) / 1e6, Duplicates: int(h.duplicates.Load()),
		Unknown: int(h.unknown.Load()), Requests: h.requests.Load(), Failed: h.failed.Load(),
		BadSignatures: h.missing.Load(), DrainSeconds: float64(end-postsEnd) / 1e9,
		ServerCPUPct: 100 * (serverCPU(*pid) - server0) / wall, ClientCPUPct: 100 * (clientCPU() - client0) / wall}
	res.cpuFigures = cpu0.since(takeCPU(*cpuPids), wall)
	res.DeadJobs = len(dead.Items)
	if deadErr != nil {
		res.DeadJobs = -1
		logf("the dead jobs were not read: %v", deadErr)
	}
	slices.Sort(postTimes)
	res.PostP50Ms, res.PostP99Ms = pct(postTimes, 0.50), pct(postTimes, 0.99)

	var lat, fromSent []float64
	for i := range h.leads {
		l := &h.leads[i]
		if !l.accepted.Load() {
			continue
		}
		d := l.delivered.Load()
		if d == 0 {
			res.Lost++
			continue
		}
		res.Delivered++
		if l.attempts.Load() == 1 {
			res.Attempts1++
		}
		c := l.created.Load()
		if d < c {
			res.BeforeCreated++
		}
		lat = append(lat, float64(max(d-c, 0))/1e6)
		fromSent = append(fromSent, float64(d-l.sent.Load())/1e6)
	}
	slices.Sort(lat)
	slices.Sort(fromSent)
	res.LatP50Ms, res.LatP99Ms = pct(lat, 0.50), pct(lat, 0.99)
	res.SentP50Ms, res.SentP99Ms = pct(fromSent, 0.50), pct(fromSent, 0.99)
	if len(lat) > 0 {
		res.LatMaxMs = lat[len(lat)-1]
	}
	// the p99 over every accepted lead, a lost one later than any
	res.LatP99AllMs = -1
	if accepted > 0 {
		if i := percentileIndex(accepted, 0.99); i < len(lat) {
			res.LatP99AllMs = lat[i]
		}
	}
	inWindow := 0
	for i := range h.leads {
		if d := h.leads[i].delivered.Load(); d != 0 && d <= postsEnd {
			inWindow++
		}
	}
	res.DeliveredPerSec = float64(inWindow) / (float64(postsEnd-start) / 1e9)
	if first, last := h.firstOK.Load(), h.lastOK.Load(); last > first {
		res.AllPerSec = float64(res.Delivered) / (float64(last-start) / 1e9)
	}
	if *replay && res.Lost == 0 {
		h.replaying.Store(true)
		t0 := h.now()
		rcpu0, rserver0, rwall0 := takeCPU(*cpuPids), serverCPU(*pid), time.Now()
		var ans struct {
			Replayed int `json:"replayed"`
		}
		if err := api.must("POST", "/v1/webhooks/"+hook.ID+"/replay", map[string]any{"since": "0-0"}, 202, &ans); err != nil {
			return err
		}
		res.Replayed = ans.Replayed
		logf("replay: %d events enqueued at once", ans.Replayed)
		replayEnd := time.Now().Add(*drain)
		for time.Now().Before(replayEnd) && int(h.replayN.Load()) < res.Delivered {
			time.Sleep(20 * time.Millisecond)
		}
		res.ReplayDelivered, res.ReplayExtra = int(h.replayN.Load()), int(h.replayExtra.Load())
		rwall := time.Since(rwall0).Seconds()
		res.ReplayServerCPU = 100 * (serverCPU(*pid) - rserver0) / rwall
		res.ReplayOtherCPU = rcpu0.since(takeCPU(*cpuPids), rwall).OtherCPU
		if last := h.replayLast.Load(); last > t0 {
			res.ReplaySeconds = float64(last-t0) / 1e9
			res.ReplayPerSec = float64(res.ReplayDelivered) / res.ReplaySeconds
		}
		logf("replay: %d of %d delivered again in %.1f s (%.1f/s)", res.ReplayDelivered, res.Delivered,
			res.ReplaySeconds, res.ReplayPerSec)
	}
	logf("delivered %d of %d accepted (%d lost, %d duplicates), %d requests of which %d answered 500; 201 -> delivered p50 %.1f ms, p99 %.1f ms",
		res.Delivered, accepted, res.Lost, res.Duplicates, res.Requests, res.Failed, res.LatP50Ms, res.LatP99Ms)
	return printJSON(res)
}

// delivered: events of this run's leads taken so far.
func (h *hookRun) delivered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.unique
}

// deliveredAccepted: accepted leads whose event was taken.
func (h *hookRun) deliveredAccepted() int {
	n := 0
	for i := range h.leads {
		if h.leads[i].accepted.Load() && h.leads[i].delivered.Load() != 0 {
			n++
		}
	}
	return n
}

// pct: the p-quantile of sorted values, 0 when there are none.
func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[percentileIndex(len(sorted), p)]
}
