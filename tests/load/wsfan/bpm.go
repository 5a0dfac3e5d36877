package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// bpm-flow: the BPM benchmark's throughput run (tests/load/bench.sh,
// BENCH_ONLY=bpm), the same process shape as the Flowable peer
// (tests/load/bpm_peer): start -> service step -> user task -> exclusive
// gateway -> end. A definition is posted:
//
//	svc      service, action webhook.post (a job on the server's queue)
//	approve  user_task assigned to the token's user, form {approved: bool}
//	ok       exclusive, "approved == true" -> end yes, default -> end no
//
// then `clients` clients, each one instance at a time, for `warmup` +
// `seconds` seconds:
//
//	POST /v1/bpm/instances {"definition_key", "variables": {"n"}}  201
//	... the bpm.task.assigned frame of that instance on a WebSocket
//	    subscribed to bpm.tasks (one connection, shared)
//	POST /v1/bpm/tasks/{task}/complete {"data": {"approved"}}     200
//
// approved alternates per client (even clients start with true), as the
// peer's threads do. An instance counts when it was started in the
// measured window (after the warm-up) and completed; instances/s = those /
// (the last one's end - the window's start), no instance being started
// after the window: the peer's own definition. Start-to-assigned is the
// time from sending the POST to reading the event frame (one process, one
// monotonic clock). Afterwards a sample of the measured instances is read
// back: status completed, and the end the gateway chose matches the data.

type bpmFlowResult struct {
	Clients          int     `json:"clients"`
	Seconds          int     `json:"seconds"`
	WarmupSeconds    int     `json:"warmup_seconds"`
	DefinitionKey    string  `json:"definition_key"`
	Instances        int     `json:"instances"` // measured: started in the window, completed
	InstancesAll     int     `json:"instances_all"`
	WindowCompleted  int     `json:"window_completed"` // completed while the window's counters ran
	InstancesPerSec  float64 `json:"instances_per_sec"`
	MeasuredSeconds  float64 `json:"measured_seconds"`
	Failed           int     `json:"failed"`
	FailedStatuses   string  `json:"failed_statuses"`
	FirstError       string  `json:"first_error,omitempty"`
	WholeP50Ms       float64 `json:"p50_ms"`
	WholeP99Ms       float64 `json:"p99_ms"`
	StartP50Ms       float64 `json:"start_p50_ms"`
	StartP99Ms       float64 `json:"start_p99_ms"`
	AssignedP50Ms    float64 `json:"assigned_p50_ms"`
	AssignedP99Ms    float64 `json:"assigned_p99_ms"`
	AssignedMaxMs    float64 `json:"assigned_max_ms"`
	AssignedP99AllMs float64 `json:"assigned_p99_all_ms"`
	AssignedAfter    float64 `json:"assigned_after_201_p50_ms"`
	AssignedAfter99  float64 `json:"assigned_after_201_p99_ms"`
	EarlyEvents      int     `json:"assigned_before_201"`
	AssignedMissing  int     `json:"assigned_missing"`
	CompleteP50Ms    float64 `json:"complete_p50_ms"`
	CompleteP99Ms    float64 `json:"complete_p99_ms"`
	EventsAssigned   int     `json:"events_assigned"`
	EventsDuplicate  int     `json:"events_duplicate"`
	EventsUnknown    int     `json:"events_unknown"`
	ListenerError    string  `json:"listener_error,omitempty"`
	Stalled          bool    `json:"stalled"`
	StalledAfterSec  float64 `json:"stalled_after_seconds"`
	StalledInFlight  int     `json:"stalled_in_flight"` // instances whose requests or events were abandoned
	Sampled          int     `json:"sampled"`
	SampleCompleted  int     `json:"sample_completed"`
	SampleEndsRight  int     `json:"sample_ends_right"`
	SampleProblem    string  `json:"sample_problem,omitempty"`
	JobsWaitSeconds  float64 `json:"jobs_wait_seconds"`
	JobsLeft         int64   `json:"jobs_left"`
	JobsServerCPUSec float64 `json:"jobs_server_cpu_seconds"`
	ServerCPUPct     float64 `json:"server_cpu_pct"`
	ClientCPUPct     float64 `json:"client_cpu_pct"`
	RSSBeforeKiB     int64   `json:"rss_before_kib"`
	RSSAfterKiB      int64   `json:"rss_after_kib"`
	cpuFigures
	pgFigures
}

// assigned: the bpm.task.assigned frame of an instance as read.
type assigned struct {
	task string
	at   int64 // ns since the run's base
}

// assignedBoard matches the listener's frames to the clients waiting for
// them; an event may come before its POST's 201 has been read (the step
// job can run before the answer is written), so it is kept until asked
// for.
type assignedBoard struct {
	mu      sync.Mutex
	early   map[string]assigned
	waiting map[string]chan assigned
	seen    map[string]bool
	n       int
	dups    int
	unknown int
	known   func(instance string) bool
}

func newAssignedBoard() *assignedBoard {
	return &assignedBoard{early: map[string]assigned{}, waiting: map[string]chan assigned{}, seen: map[string]bool{}}
}

func (b *assignedBoard) arrive(instance string, a assigned) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n++
	if b.seen[instance] {
		b.dups++
		return
	}
	b.seen[instance] = true
	if ch, ok := b.waiting[instance]; ok {
		delete(b.waiting, instance)
		ch <- a
		return
	}
	b.early[instance] = a
}

// wait returns the instance's event, or false after timeout or once stop
// is closed.
func (b *assignedBoard) wait(instance string, timeout time.Duration, stop <-chan struct{}) (assigned, bool) {
	b.mu.Lock()
	if a, ok := b.early[instance]; ok {
		delete(b.early, instance)
		b.mu.Unlock()
		return a, true
	}
	ch := make(chan assigned, 1)
	b.waiting[instance] = ch
	b.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-ch:
		return a, true
	case <-stop:
	case <-t.C:
	}
	b.mu.Lock()
	delete(b.waiting, instance)
	b.mu.Unlock()
	// it may have been sent just now
	select {
	case a := <-ch:
		return a, true
	default:
		return assigned{}, false
	}
}

// callCtx is erpAPI.call under ctx: a run that stops (the server stalled)
// abandons its requests.
func (a *erpAPI) callCtx(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp.StatusCode, text, err
}

// bpmListen dials url, authenticates with token and subscribes to
// bpm.tasks.
func bpmListen(url, token string) (*websocket.Conn, error) {
	d := &websocket.Dialer{HandshakeTimeout: 30 * time.Second}
	conn, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	auth, _ := json.Marshal(map[string]any{"type": "auth", "token": token, "topics": []string{"bpm.tasks"}})
	if err := trellisAuth(conn, auth, "bpm.tasks", time.Now().Add(30*time.Second)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// bpmDefinition is the benchmark's process, assigned to user.
func bpmDefinition(key, user string) map[string]any {
	return map[string]any{
		"key": key, "name": "Bench flow",
		"nodes": []map[string]any{
			{"id": "svc", "type": "service", "action": "webhook.post"},
			{"id": "approve", "type": "user_task", "name": "Approve", "assignee": map[string]any{"user_id": user},
				"form": []map[string]any{{"key": "approved", "type": "bool", "required": true}}},
			{"id": "ok", "type": "exclusive", "default": "no"},
			{"id": "yes", "type": "end"},
			{"id": "no", "type": "end"},
		},
		"flows": []map[string]any{
			{"from": "start", "to": "svc"},
			{"from": "svc", "to": "approve"},
			{"from": "approve", "to": "ok"},
			{"from": "ok", "to": "yes", "when": "approved == true"},
			{"from": "ok", "to": "no"},
		},
	}
}

type flowInstance struct {
	id       string
	approved bool
}

func runBpmFlow(args []string) error {
	fs := flag.NewFlagSet("bpm-flow", flag.ExitOnError)
	httpBase := fs.String("http", "", "base URL of the HTTP API (http://127.0.0.1:PORT)")
	wsURL := fs.String("ws", "", "WebSocket URL (ws://127.0.0.1:PORT/v1/ws)")
	token := fs.String("token", "", "an owner's access token (every request and the listener use it; the tasks are assigned to its user)")
	clients := fs.Int("clients", 32, "clients, each one instance at a time")
	seconds := fs.Int("seconds", 20, "measured seconds (no instance is started after them)")
	warmup := fs.Int("warmup", 5, "seconds before the measured window (instances started then do not count)")
	samples := fs.Int("samples", 100, "measured instances read back afterwards (status, the end taken)")
	pid := fs.Int("pid", 0, "server process id, for CPU and RSS (0: not measured)")
	cpuPids := fs.String("cpu-pids", "", "name=pid,... other processes whose CPU (children included) is reported over the window (e.g. ferretdb=PID,postgres=PID,redis=PID)")
	pgConn := fs.String("pg", "", "libpq connection string of FerretDB's PostgreSQL: its transaction and row counters over the window are reported (psql)")
	timeout := fs.Duration("request-timeout", 60*time.Second, "a request unanswered this long fails its instance")
	jobsWait := fs.Duration("jobs-wait", 3*time.Minute, "after the run, wait at most this long for the engine's jobs (settle jobs) to run")
	stall := fs.Duration("stall", 20*time.Second, "a server that answers nothing, pushes nothing and fails nothing this long while clients wait has stalled: the run stops")
	eventTimeout := fs.Duration("event-timeout", 30*time.Second, "an instance whose bpm.task.assigned has not come this long after its 201 fails")
	fs.Parse(args)

	if *clients < 1 || *seconds < 1 || *warmup < 0 || *samples < 0 {
		return errors.New("-clients and -seconds must be positive, -warmup and -samples not negative")
	}
	if *httpBase == "" || *wsURL == "" {
		return errors.New("bpm-flow needs -http and -ws")
	}
	if *token == "" {
		return errNoToken
	}
	user, err := jwtSubject(*token)
	if err != nil {
		return err
	}
	debug.SetGCPercent(400)
	res := bpmFlowResult{Clients: *clients, Seconds: *seconds, WarmupSeconds: *warmup}
	api := &erpAPI{base: *httpBase, token: *token, hc: newHTTPClient(*clients+16, *timeout)}
	res.DefinitionKey = "bench-flow-" + runTag()
	if err := api.must("POST", "/v1/bpm/definitions", bpmDefinition(res.DefinitionKey, user), 201, nil); err != nil {
		return fmt.Errorf("definition: %w", err)
	}
	logf("bpm-flow: definition %s posted (service -> user task -> exclusive -> end)", res.DefinitionKey)

	conn, err := bpmListen(*wsURL, *token)
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	board := newAssignedBoard()
	var stopped atomic.Bool
	var listenErr atomic.Value
	var wmu sync.Mutex
	lwg := sync.WaitGroup{}
	lwg.Add(1)
	go func() {
		defer lwg.Done()
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				if !stopped.Load() {
					listenErr.Store(closeCode(err))
				}
				return
			}
			at := now()
			var ev struct {
				Type  string `json:"type"`
				Event string `json:"event"`
				Data  struct {
					ID         string `json:"id"`
					InstanceID string `json:"instance_id"`
				} `json:"data"`
			}
			if json.Unmarshal(msg, &ev) != nil || ev.Type != "event" || ev.Event != "bpm.task.assigned" {
				continue
			}
			if ev.Data.InstanceID == "" || ev.Data.ID == "" {
				board.mu.Lock()
				board.unknown++
				board.mu.Unlock()
				continue
			}
			board.arrive(ev.Data.InstanceID, assigned{task: ev.Data.ID, at: at})
		}
	}()
	stopPing := make(chan struct{})
	go func() {
		tk := time.NewTicker(20 * time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stopPing:
				return
			case <-tk.C:
			}
			wmu.Lock()
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
			wmu.Unlock()
		}
	}()

	var (
		whole, startT, assignedT, afterT, completeT timings
		fails                                       statusCounts
		mu                                          sync.Mutex
		measured                                    []flowInstance
		all                                         atomic.Int64
		lastEnd                                     atomic.Int64
		early                                       atomic.Int64
		missing                                     atomic.Int64
		seq                                         atomic.Int64
		windowDone                                  atomic.Int64
		inFlight                                    atomic.Int64
	)
	measureStart := int64(*warmup) * int64(time.Second)
	measureEnd := measureStart + int64(*seconds)*int64(time.Second)
	logf("%d clients: start -> bpm.task.assigned -> complete, %ds warm-up + %ds measured", *clients, *warmup, *seconds)

	var cpu0 cpuSnapshot
	var pg0 pgSnapshot
	var cpuServer0, cpuClient0 float64
	var wall0 time.Time
	windowOpened := make(chan struct{})
	go func() {
		time.Sleep(time.Duration(measureStart) - time.Since(base))
		res.RSSBeforeKiB = readRSS(*pid)
		cpuServer0, cpuClient0, wall0 = serverCPU(*pid), clientCPU(), time.Now()
		cpu0 = takeCPU(*cpuPids)
		pg0 = takePG(*pgConn)
		close(windowOpened)
	}()

	// the watchdog: a server that neither answers nor pushes anything for
	// `stall` while clients wait has stopped; the run ends there (its
	// requests abandoned) instead of waiting out every timeout
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stalledAt atomic.Int64
	progress := func() int64 {
		board.mu.Lock()
		n := int64(board.n)
		board.mu.Unlock()
		return n + all.Load() + int64(fails.total())
	}
	running := make(chan struct{})
	go func() {
		last, since := progress(), time.Now()
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-running:
				return
			case <-tk.C:
			}
			if p := progress(); p != last {
				last, since = p, time.Now()
			} else if time.Since(since) >= *stall {
				stalledAt.Store(int64(since.Sub(base)))
				logf("no answer, event or failure for %s: the server stalled %.1fs into the run; stopping", *stall, since.Sub(base).Seconds())
				cancel()
				return
			}
		}
	}()

	var cwg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		cwg.Add(1)
		go func(c int) {
			defer cwg.Done()
			approved := c%2 == 0
			for {
				t0 := now()
				if t0 >= measureEnd || ctx.Err() != nil {
					return
				}
				counted := t0 >= measureStart
				n := seq.Add(1)
				body, _ := json.Marshal(map[string]any{"definition_key": res.DefinitionKey, "variables": map[string]any{"n": n}})
				status, text, err := api.callCtx(ctx, "POST", "/v1/bpm/instances", body)
				t1 := now()
				var inst struct {
					ID string `json:"id"`
				}
				if ctx.Err() != nil {
					inFlight.Add(1)
					return
				}
				if err != nil || status != 201 || json.Unmarshal(text, &inst) != nil || inst.ID == "" {
					if err == nil && status == 201 {
						err = errors.New("201 without an instance id")
					}
					fails.add("start", status, text, err)
					continue
				}
				a, ok := board.wait(inst.ID, *eventTimeout, ctx.Done())
				if !ok && ctx.Err() != nil {
					inFlight.Add(1)
					return
				}
				if !ok {
					missing.Add(1)
					fails.add("bpm.task.assigned", 0, nil, fmt.Errorf("instance %s: no event within %s", inst.ID, *eventTimeout))
					continue
				}
				data, _ := json.Marshal(map[string]any{"data": map[string]any{"approved": approved}})
				t2 := now()
				status, text, err = api.callCtx(ctx, "POST", "/v1/bpm/tasks/"+a.task+"/complete", data)
				t3 := now()
				if ctx.Err() != nil {
					inFlight.Add(1)
					return
				}
				if err != nil || status != 200 {
					fails.add("complete", status, text, err)
					continue
				}
				all.Add(1)
				if t3 >= measureStart {
					windowDone.Add(1)
				}
				if counted {
					whole.add(time.Duration(t3 - t0))
					startT.add(time.Duration(t1 - t0))
					assignedT.add(time.Duration(a.at - t0))
					afterT.add(time.Duration(a.at - t1))
					completeT.add(time.Duration(t3 - t2))
					if a.at < t1 {
						early.Add(1)
					}
					mu.Lock()
					measured = append(measured, flowInstance{id: inst.ID, approved: approved})
					mu.Unlock()
					for {
						l := lastEnd.Load()
						if t3 <= l || lastEnd.CompareAndSwap(l, t3) {
							break
						}
					}
				}
				approved = !approved
			}
		}(c)
	}
	cwg.Wait()
	close(running)
	<-windowOpened
	if at := stalledAt.Load(); at > 0 {
		res.Stalled = true
		res.StalledAfterSec = float64(at) / 1e9
		res.StalledInFlight = int(inFlight.Load())
	}
	wall := time.Since(wall0).Seconds()
	res.ServerCPUPct = 100 * (serverCPU(*pid) - cpuServer0) / wall
	res.ClientCPUPct = 100 * (clientCPU() - cpuClient0) / wall
	res.cpuFigures = cpu0.since(takeCPU(*cpuPids), wall)
	res.pgFigures = pg0.since(takePG(*pgConn))
	res.RSSAfterKiB = readRSS(*pid)
	res.Instances = len(measured)
	res.InstancesAll = int(all.Load())
	res.Failed = fails.total()
	res.FailedStatuses = fails.describe()
	res.FirstError = fails.first
	res.AssignedMissing = int(missing.Load())
	res.EarlyEvents = int(early.Load())
	if l := lastEnd.Load(); l > measureStart {
		res.MeasuredSeconds = float64(l-measureStart) / 1e9
	} else {
		res.MeasuredSeconds = float64(*seconds)
	}
	res.InstancesPerSec = float64(res.Instances) / res.MeasuredSeconds
	res.WindowCompleted = int(windowDone.Load())
	if res.pgFigures.PGXacts > 0 && res.WindowCompleted > 0 {
		// the counters run over the window: the instances completed in
		// it (warm-up ones finishing there included) are what they paid for
		res.PGXactsPerInstance = float64(res.PGXacts) / float64(res.WindowCompleted)
		res.PGRowsPerInstance = float64(res.PGRowsRead+res.PGRowsWritten) / float64(res.WindowCompleted)
	}
	res.WholeP50Ms, res.WholeP99Ms = whole.percentiles()
	res.StartP50Ms, res.StartP99Ms = startT.percentiles()
	res.AssignedP50Ms, res.AssignedP99Ms = assignedT.percentiles()
	res.AssignedAfter, res.AssignedAfter99 = afterT.percentiles()
	res.CompleteP50Ms, res.CompleteP99Ms = completeT.percentiles()
	// the goal's p99 counts an instance whose event never came (in the
	// window) as later than any; -1 when more than 1% are missing
	res.AssignedP99AllMs = -1
	assignedT.mu.Lock()
	got := slices.Clone(assignedT.ns)
	assignedT.mu.Unlock()
	slices.Sort(got)
	if len(got) > 0 {
		res.AssignedMaxMs = float64(got[len(got)-1]) / 1e6
		if i := percentileIndex(len(got)+res.AssignedMissing, 0.99); i < len(got) {
			res.AssignedP99AllMs = float64(got[i]) / 1e6
		}
	}
	logf("%d instances measured in %.1fs: %.1f/s (%d in all, %d failed %s); start->assigned p50 %.1f ms p99 %.1f ms; whole p50 %.1f ms p99 %.1f ms",
		res.Instances, res.MeasuredSeconds, res.InstancesPerSec, res.InstancesAll, res.Failed, res.FailedStatuses,
		res.AssignedP50Ms, res.AssignedP99Ms, res.WholeP50Ms, res.WholeP99Ms)

	stopped.Store(true)
	close(stopPing)
	wmu.Lock()
	conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	wmu.Unlock()
	conn.Close()
	lwg.Wait()
	if v, ok := listenErr.Load().(string); ok {
		res.ListenerError = v
	}
	board.mu.Lock()
	res.EventsAssigned, res.EventsDuplicate, res.EventsUnknown = board.n, board.dups, board.unknown
	board.mu.Unlock()

	// the deferred work: each start, each move that makes a step and each
	// complete schedules a settle job bpm_settle_after_ms later (30 s by
	// default), so most of them run after the window; they are waited for
	// here, and what the server spent meanwhile is reported
	if res.Stalled {
		// nothing more to ask a stalled server; the caller may read its
		// threads while it is still stuck
		logf("stalled: %d instances in flight abandoned; no job wait, no sample", res.StalledInFlight)
		return printJSON(res)
	}
	t0, s0 := time.Now(), serverCPU(*pid)
	left, err := waitJobs(api, "bpm", *jobsWait)
	if err != nil {
		logf("job backlog not read: %v", err)
	}
	res.JobsWaitSeconds, res.JobsLeft, res.JobsServerCPUSec = time.Since(t0).Seconds(), left, serverCPU(*pid)-s0
	logf("engine jobs after the run: waited %.1fs, %d left; server CPU meanwhile %.1fs", res.JobsWaitSeconds, left, res.JobsServerCPUSec)

	res.Sampled, res.SampleCompleted, res.SampleEndsRight, res.SampleProblem = sampleInstances(api, measured, *samples)
	logf("sample of %d measured instances: %d completed, %d ended where the gateway should send them %s",
		res.Sampled, res.SampleCompleted, res.SampleEndsRight, res.SampleProblem)
	return printJSON(res)
}

// sampleInstances reads n of the instances back, spread over the run:
// each must be completed and have ended in "yes" when approved, "no"
// otherwise (its history).
func sampleInstances(api *erpAPI, list []flowInstance, n int) (sampled, completed, right int, problem string) {
	if n > len(list) {
		n = len(list)
	}
	for i := 0; i < n; i++ {
		fi := list[i*len(list)/n]
		sampled++
		var inst struct {
			Status string `json:"status"`
		}
		if err := api.must("GET", "/v1/bpm/instances/"+fi.id, nil, 200, &inst); err != nil {
			if problem == "" {
				problem = err.Error()
			}
			continue
		}
		if inst.Status == "completed" {
			completed++
		} else if problem == "" {
			problem = fmt.Sprintf("instance %s is %s", fi.id, inst.Status)
		}
		var hist struct {
			Items []struct {
				NodeID string `json:"node_id"`
				Action string `json:"action"`
			} `json:"items"`
		}
		if err := api.must("GET", "/v1/bpm/instances/"+fi.id+"/history", nil, 200, &hist); err != nil {
			if problem == "" {
				problem = err.Error()
			}
			continue
		}
		want, other := "yes", "no"
		if !fi.approved {
			want, other = "no", "yes"
		}
		var sawWant, sawOther bool
		for _, h := range hist.Items {
			sawWant = sawWant || h.NodeID == want
			sawOther = sawOther || h.NodeID == other
		}
		if sawWant && !sawOther {
			right++
		} else if problem == "" {
			problem = fmt.Sprintf("instance %s (approved %v): history %+v", fi.id, fi.approved, hist.Items)
		}
	}
	return
}

// ---- CPU of other processes, and PostgreSQL's counters ----

type cpuFigures struct {
	OtherCPU string `json:"other_cpu,omitempty"` // "ferretdb=123%,postgres=45%"
}

// cpuSnapshot: CPU seconds of named processes (with their children, live
// and reaped) at one moment, and the machine's busy time.
type cpuSnapshot struct {
	names []string
	secs  []float64
	busy  float64
}

func takeCPU(spec string) cpuSnapshot {
	var s cpuSnapshot
	for _, f := range splitList(spec) {
		name, p, ok := strings.Cut(f, "=")
		var pid int
		if _, err := fmt.Sscan(p, &pid); !ok || err != nil {
			continue
		}
		s.names = append(s.names, name)
		s.secs = append(s.secs, treeCPU(pid))
	}
	s.busy = machineBusy()
	return s
}

func (s cpuSnapshot) since(later cpuSnapshot, wall float64) cpuFigures {
	var parts []string
	for i, n := range s.names {
		if i < len(later.secs) {
			parts = append(parts, fmt.Sprintf("%s=%.0f%%", n, 100*(later.secs[i]-s.secs[i])/wall))
		}
	}
	if s.busy > 0 && later.busy > s.busy {
		parts = append(parts, fmt.Sprintf("machine=%.0f%%", 100*(later.busy-s.busy)/wall))
	}
	return cpuFigures{OtherCPU: strings.Join(parts, ",")}
}

// treeCPU: user + system seconds of pid, of its reaped children, and of
// its live children (PostgreSQL's backends are children of the postmaster;
// one that exits is added to the postmaster's reaped times).
func treeCPU(pid int) float64 {
	total := procTimes(pid, true)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return total
	}
	for _, e := range entries {
		var child int
		if _, err := fmt.Sscan(e.Name(), &child); err != nil || child == pid {
			continue
		}
		if procParent(child) == pid {
			total += procTimes(child, true)
		}
	}
	return total
}

// procStat: the fields of /proc/PID/stat after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func procParent(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	var p int
	fmt.Sscan(f[1], &p)
	return p
}

// procTimes: utime + stime (and cutime + cstime) in seconds.
func procTimes(pid int, children bool) float64 {
	f := procStat(pid)
	if len(f) < 15 {
		return 0
	}
	var t float64
	last := 12
	if children {
		last = 14
	}
	for i := 11; i <= last; i++ {
		var v float64
		fmt.Sscan(f[i], &v)
		t += v
	}
	return t / clockTicks
}

// machineBusy: CPU seconds all cores spent not idle (nor waiting on IO).
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for i := 1; i < len(f) && i <= 8; i++ {
		if i == 4 || i == 5 {
			continue
		}
		var v float64
		fmt.Sscan(f[i], &v)
		busy += v
	}
	return busy / clockTicks
}

type pgFigures struct {
	PGXacts            int64   `json:"pg_xacts,omitempty"`
	PGRowsRead         int64   `json:"pg_rows_read,omitempty"`
	PGRowsWritten      int64   `json:"pg_rows_written,omitempty"`
	PGXactsPerInstance float64 `json:"pg_xacts_per_instance,omitempty"`
	PGRowsPerInstance  float64 `json:"pg_rows_per_instance,omitempty"`
}

// pgSnapshot: pg_stat_database's counters of FerretDB's database.
type pgSnapshot struct {
	ok                   bool
	xacts, read, written int64
}

func takePG(conn string) pgSnapshot {
	if conn == "" {
		return pgSnapshot{}
	}
	// the statistics of the current transaction are a snapshot: none is
	// open here, so each call sees the counters as of now (within the
	// collector's own delay, PGSTAT_MIN_INTERVAL)
	out, err := exec.Command("psql", conn, "-Atc",
		"select pg_stat_clear_snapshot(); select xact_commit + xact_rollback, tup_fetched, "+
			"tup_inserted + tup_updated + tup_deleted from pg_stat_database where datname = current_database()").Output()
	if err != nil {
		logf("psql: %v", err)
		return pgSnapshot{}
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var s pgSnapshot
	if _, err := fmt.Sscanf(strings.ReplaceAll(lines[len(lines)-1], "|", " "), "%d %d %d", &s.xacts, &s.read, &s.written); err != nil {
		logf("psql: unexpected answer %q", out)
		return pgSnapshot{}
	}
	s.ok = true
	return s
}

func (s pgSnapshot) since(later pgSnapshot) pgFigures {
	if !s.ok || !later.ok {
		return pgFigures{}
	}
	return pgFigures{PGXacts: later.xacts - s.xacts, PGRowsRead: later.read - s.read, PGRowsWritten: later.written - s.written}
}
