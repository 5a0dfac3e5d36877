package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
)

// bpm-inbox: the BPM benchmark's inbox run (tests/load/bench.sh,
// BENCH_ONLY=bpm). `tasks` open tasks are made for the token's user, then
// GET /v1/bpm/tasks?assignee=me&limit=50 (the first page of the inbox) is
// timed `requests` times, one at a time on one keep-alive connection, after
// `warmup-requests` untimed ones.
//
// The tasks: a definition of one user task (start -> approve, assigned to
// the user -> end) and its instances started through the API by `clients`
// clients at once, `probe` at a time, timed; as soon as the time spent plus
// the rest at the last batch's rate would exceed `api-budget`, the rest are
// copies of the first instance and its task written by `loader`
// (build/load_bpm: the data layer's own import, every field as the server
// stored it, list positions included) and the output says how many went
// which way.

type bpmInboxResult struct {
	Tasks           int     `json:"tasks"` // open tasks of the user when timing began (API + loader)
	DefinitionKey   string  `json:"definition_key"`
	APIStarted      int     `json:"api_started"`
	APISeconds      float64 `json:"api_seconds"`
	APIPerSec       float64 `json:"api_per_sec"`
	APIClients      int     `json:"api_clients"`
	APIProjectedSec float64 `json:"api_projected_seconds"` // all `tasks` through the API: the time spent + the rest at the last probe's rate
	APIFailed       int     `json:"api_failed"`
	APIFirstError   string  `json:"api_first_error,omitempty"`
	Loaded          int     `json:"loaded"`
	LoadSeconds     float64 `json:"load_seconds"`
	LoadedOpenTasks int64   `json:"loaded_open_tasks"` // the loader's count afterwards
	SeedMethod      string  `json:"seed_method"`
	JobsWaitSeconds float64 `json:"jobs_wait_seconds"`
	JobsLeft        int64   `json:"jobs_left"`
	AnalyzeSeconds  float64 `json:"analyze_seconds"`
	Requests        int     `json:"requests"` // asked for
	Timed           int     `json:"timed"`    // made (the time budget may stop it first)
	WarmupRequests  int     `json:"warmup_requests"`
	WarmupDone      int     `json:"warmup_done"`
	Query           string  `json:"query"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	Failed          int     `json:"failed"`
	FirstError      string  `json:"first_error,omitempty"`
	PageItems       int     `json:"page_items"`
	ServerCPUPct    float64 `json:"server_cpu_pct"`
	cpuFigures
	// the same page with ?status=open too (`also-open`)
	OpenP50Ms float64 `json:"open_p50_ms,omitempty"`
	OpenP99Ms float64 `json:"open_p99_ms,omitempty"`
	OpenCount int     `json:"open_requests,omitempty"`
}

func runBpmInbox(args []string) error {
	fs := flag.NewFlagSet("bpm-inbox", flag.ExitOnError)
	httpBase := fs.String("http", "", "base URL of the HTTP API (http://127.0.0.1:PORT)")
	token := fs.String("token", "", "an owner's access token (the tasks are assigned to its user)")
	tenant := fs.String("tenant", "", "the token's tenant id (for the loader)")
	tasks := fs.Int("tasks", 100000, "open tasks of the user before timing")
	clients := fs.Int("clients", 32, "clients starting instances through the API at once")
	probe := fs.Int("probe", 2000, "instances started through the API at a time; after each batch its rate says whether all the tasks still fit -api-budget")
	budget := fs.Duration("api-budget", 10*time.Minute, "when the API would take longer than this for all the tasks, the loader makes the rest")
	loader := fs.String("loader", "", "the loader (build/load_bpm); empty: every task through the API")
	requests := fs.Int("requests", 200, "timed GETs of the first page")
	warmupRequests := fs.Int("warmup-requests", 10, "untimed GETs before them")
	alsoOpen := fs.Int("also-open", 0, "GETs of the same page with &status=open timed after them (0: none)")
	limit := fs.Int("limit", 50, "page size")
	pid := fs.Int("pid", 0, "server process id, for CPU (0: not measured)")
	cpuPids := fs.String("cpu-pids", "", "name=pid,... other processes whose CPU is reported over the timed GETs")
	timeout := fs.Duration("request-timeout", 120*time.Second, "a request unanswered this long fails")
	maxTime := fs.Duration("max-time", 10*time.Minute, "stop timing GETs after this long even if fewer than -requests were made (the &status=open series after a quarter of it)")
	warmupMax := fs.Duration("warmup-max", time.Minute, "stop the untimed GETs after this long")
	jobsWait := fs.Duration("jobs-wait", 5*time.Minute, "wait at most this long for the engine's jobs (the starts' settle jobs) to run before timing")
	pgConn := fs.String("pg", "", "libpq connection string of FerretDB's PostgreSQL: VACUUM (ANALYZE) after seeding (psql)")
	fs.Parse(args)

	if *tasks < 1 || *clients < 1 || *probe < 1 || *requests < 1 || *warmupRequests < 0 || *limit < 1 || *limit > 200 {
		return errors.New("-tasks, -clients, -probe, -requests must be positive, -limit 1 to 200")
	}
	if *httpBase == "" || *token == "" {
		return errors.New("bpm-inbox needs -http and -token")
	}
	if *loader != "" && *tenant == "" {
		return errors.New("-loader needs -tenant")
	}
	user, err := jwtSubject(*token)
	if err != nil {
		return err
	}
	debug.SetGCPercent(400)
	res := bpmInboxResult{APIClients: *clients, Requests: *requests, WarmupRequests: *warmupRequests}
	api := &erpAPI{base: *httpBase, token: *token, hc: newHTTPClient(*clients+16, *timeout)}
	res.DefinitionKey = "bench-inbox-" + runTag()
	def := map[string]any{
		"key": res.DefinitionKey, "name": "Bench inbox",
		"nodes": []map[string]any{
			{"id": "approve", "type": "user_task", "name": "Approve", "assignee": map[string]any{"user_id": user},
				"form": []map[string]any{{"key": "approved", "type": "bool", "required": true}}},
			{"id": "done", "type": "end"},
		},
		"flows": []map[string]any{{"from": "start", "to": "approve"}, {"from": "approve", "to": "done"}},
	}
	if err := api.must("POST", "/v1/bpm/definitions", def, 201, nil); err != nil {
		return fmt.Errorf("definition: %w", err)
	}

	// ---- through the API: the probe, then the rest if it fits the budget ----
	var first atomic.Value
	var fails statusCounts
	var started atomic.Int64
	startSome := func(n int) time.Duration {
		t0 := time.Now()
		body, _ := json.Marshal(map[string]any{"definition_key": res.DefinitionKey})
		parallel(n, *clients, func(int) error {
			status, text, err := api.call("POST", "/v1/bpm/instances", body, "")
			var inst struct {
				ID string `json:"id"`
			}
			if err != nil || status != 201 || json.Unmarshal(text, &inst) != nil || inst.ID == "" {
				fails.add("start", status, text, err)
				return nil
			}
			first.CompareAndSwap(nil, inst.ID)
			if c := started.Add(1); c%5000 == 0 {
				logf("%d instances started through the API, %.1fs", c, time.Since(t0).Seconds())
			}
			return nil
		})
		return time.Since(t0)
	}
	n := min(*probe, *tasks)
	logf("bpm-inbox: starting %d instances of a one-task definition through the API, %d clients", n, *clients)
	spent := startSome(n)
	res.APIPerSec = float64(started.Load()) / spent.Seconds()
	res.APIProjectedSec = float64(*tasks) / res.APIPerSec
	logf("%d started in %.1fs: %.1f/s; all %d this way would take %.0fs (budget %s)", started.Load(), spent.Seconds(),
		res.APIPerSec, *tasks, res.APIProjectedSec, *budget)
	if fails.total() > 0 {
		res.APIFailed, res.APIFirstError = fails.total(), fails.first
		printJSON(res)
		return fmt.Errorf("instances failed to start: %s (%s)", fails.describe(), fails.first)
	}
	// on through the API a probe's worth at a time while the rate of the
	// last one says the whole would fit the budget (the starts' settle jobs
	// come due 30 s after them and slow the later ones down)
	rest := *tasks - n
	for rest > 0 && fails.total() == 0 {
		projected := spent.Seconds() + float64(rest)/res.APIPerSec
		if *loader != "" && projected > budget.Seconds() {
			res.APIProjectedSec = projected
			break
		}
		k := min(*probe, rest)
		before := started.Load()
		d := startSome(k)
		spent += d
		rest -= k
		res.APIPerSec = float64(started.Load()-before) / d.Seconds()
		res.APIProjectedSec = spent.Seconds() + float64(rest)/res.APIPerSec
	}
	res.APIStarted = int(started.Load())
	res.APISeconds = spent.Seconds()
	res.APIPerSec = float64(res.APIStarted) / res.APISeconds
	if rest > 0 {
		logf("%d started through the API in %.1fs (%.1f/s); at the last %d's rate all %d would take %.0fs, over %s",
			res.APIStarted, res.APISeconds, res.APIPerSec, min(*probe, res.APIStarted), *tasks, res.APIProjectedSec, *budget)
	}
	res.APIFailed, res.APIFirstError = fails.total(), fails.first
	if res.APIFailed > 0 {
		printJSON(res)
		return fmt.Errorf("instances failed to start: %s (%s)", fails.describe(), fails.first)
	}
	res.SeedMethod = "api"
	if rest > 0 {
		tmpl, _ := first.Load().(string)
		logf("the rest (%d) by %s: copies of instance %s and its task", rest, *loader, tmpl)
		t0 := time.Now()
		cmd := exec.Command(*loader, *tenant, tmpl, fmt.Sprint(rest))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		res.LoadSeconds = time.Since(t0).Seconds()
		if err != nil {
			printJSON(res)
			return fmt.Errorf("%s: %w", *loader, err)
		}
		var lr struct {
			Tasks     int   `json:"tasks"`
			OpenTasks int64 `json:"open_tasks"`
		}
		if err := json.Unmarshal(out, &lr); err != nil {
			return fmt.Errorf("%s printed %q", *loader, out)
		}
		res.Loaded, res.LoadedOpenTasks = lr.Tasks, lr.OpenTasks
		res.SeedMethod = "api+loader"
		logf("loaded %d in %.1fs; the user's open tasks now: %d", res.Loaded, res.LoadSeconds, res.LoadedOpenTasks)
		if lr.OpenTasks != int64(*tasks) {
			printJSON(res)
			return fmt.Errorf("the user has %d open tasks, not %d", lr.OpenTasks, *tasks)
		}
	}
	res.Tasks = res.APIStarted + res.Loaded

	// ---- quiet before timing: the starts' settle jobs (each due
	// bpm_settle_after_ms after its start) run first, then VACUUM
	// (ANALYZE) as autovacuum would after a bulk load ----
	t0 := time.Now()
	left, err := waitJobs(api, "bpm", *jobsWait)
	res.JobsWaitSeconds = time.Since(t0).Seconds()
	res.JobsLeft = left
	if err != nil {
		logf("job backlog not read: %v", err)
	}
	logf("engine jobs waited for %.1fs, %d left", res.JobsWaitSeconds, left)
	if *pgConn != "" {
		t0 := time.Now()
		if out, err := exec.Command("psql", *pgConn, "-Atqc", "VACUUM (ANALYZE)").CombinedOutput(); err != nil {
			return fmt.Errorf("VACUUM (ANALYZE): %v %s", err, out)
		}
		res.AnalyzeSeconds = time.Since(t0).Seconds()
		logf("VACUUM (ANALYZE) in %.1fs", res.AnalyzeSeconds)
	}

	// ---- the inbox's first page ----
	res.Query = fmt.Sprintf("/v1/bpm/tasks?assignee=me&limit=%d", *limit)
	want := min(*limit, res.Tasks)
	page := func(path string) (time.Duration, error) {
		t0 := time.Now()
		status, text, err := api.call("GET", path, nil, "")
		d := time.Since(t0)
		if err != nil {
			return d, err
		}
		if status != 200 {
			return d, fmt.Errorf("%d %.200s", status, strings.TrimSpace(string(text)))
		}
		var body struct {
			Items []struct {
				AssigneeID string `json:"assignee_id"`
				Status     string `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal(text, &body); err != nil {
			return d, fmt.Errorf("not the JSON expected: %.200s", text)
		}
		if len(body.Items) != want {
			return d, fmt.Errorf("%d items, not %d", len(body.Items), want)
		}
		for _, it := range body.Items {
			if it.AssigneeID != user || it.Status != "open" {
				return d, fmt.Errorf("an item of %s, %s", it.AssigneeID, it.Status)
			}
		}
		res.PageItems = len(body.Items)
		return d, nil
	}
	logf("GET %s: %d untimed (at most %s), then %d timed (at most %s)", res.Query, *warmupRequests, *warmupMax, *requests, *maxTime)
	w0 := time.Now()
	for i := 0; i < *warmupRequests && (i == 0 || time.Since(w0) < *warmupMax); i++ {
		res.WarmupDone++
		if _, err := page(res.Query); err != nil {
			res.Failed++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
		}
	}
	var lat timings
	cpu0, server0, wall0 := takeCPU(*cpuPids), serverCPU(*pid), time.Now()
	for i := 0; i < *requests && (i == 0 || time.Since(wall0) < *maxTime); i++ {
		res.Timed++
		d, err := page(res.Query)
		lat.add(d)
		if err != nil {
			res.Failed++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
		}
		if (i+1)%50 == 0 {
			p50, _ := lat.percentiles()
			logf("%d GETs, p50 so far %.1f ms", i+1, p50)
		}
	}
	wall := time.Since(wall0).Seconds()
	res.ServerCPUPct = 100 * (serverCPU(*pid) - server0) / wall
	res.cpuFigures = cpu0.since(takeCPU(*cpuPids), wall)
	res.P50Ms, res.P99Ms = lat.percentiles()
	for _, ns := range lat.ns {
		res.MaxMs = max(res.MaxMs, float64(ns)/1e6)
	}
	logf("inbox page over %d open tasks, %d GETs: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d failed); CPU: server %.0f%% %s",
		res.Tasks, res.Timed, res.P50Ms, res.P99Ms, res.MaxMs, res.Failed, res.ServerCPUPct, res.OtherCPU)
	if *alsoOpen > 0 {
		var open timings
		q := res.Query + "&status=open"
		o0 := time.Now()
		for i := 0; i < *alsoOpen && (i == 0 || time.Since(o0) < *maxTime/4); i++ {
			res.OpenCount++
			d, err := page(q)
			open.add(d)
			if err != nil {
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
			}
		}
		res.OpenP50Ms, res.OpenP99Ms = open.percentiles()
		logf("with &status=open, %d GETs: p50 %.1f ms, p99 %.1f ms", res.OpenCount, res.OpenP50Ms, res.OpenP99Ms)
	}
	return printJSON(res)
}

// waitJobs waits until the server's queue has nothing delayed, waiting or
// in flight (GET /metrics), at most for `most`; what is left.
func waitJobs(api *erpAPI, queue string, most time.Duration) (int64, error) {
	deadline := time.Now().Add(most)
	for {
		status, text, err := api.call("GET", "/metrics", nil, "")
		if err != nil {
			return -1, err
		}
		if status != 200 {
			return -1, fmt.Errorf("GET /metrics: %d", status)
		}
		var left int64
		for _, line := range strings.Split(string(text), "\n") {
			for _, state := range []string{"delayed", "waiting", "in_flight"} {
				prefix := fmt.Sprintf("trellis_jobs{queue=%q,state=%q} ", queue, state)
				if v, ok := strings.CutPrefix(line, prefix); ok {
					var n int64
					fmt.Sscan(v, &n)
					left += n
				}
			}
		}
		if left == 0 || time.Now().After(deadline) {
			return left, nil
		}
		time.Sleep(time.Second)
	}
}
