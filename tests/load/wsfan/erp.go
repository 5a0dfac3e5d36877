package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// erp-sales: the ERP sales flow benchmark (tests/load/bench.sh,
// BENCH_ONLY=erp). A warehouse and `products` products are made and
// stocked through the API; then `clients` clients, each one order at a
// time, run the whole flow for `seconds` seconds:
//
//	POST /v1/erp/orders                 201 (lines of `lines` products)
//	POST /v1/erp/orders/{id}/confirm    200 (reserves every line)
//	POST /v1/erp/orders/{id}/invoice    201
//	POST /v1/erp/orders/{id}/payments   201 (the whole total, Idempotency-Key)
//	POST /v1/erp/orders/{id}/shipments  201 (every line, Idempotency-Key)
//
// An order whose step is answered otherwise is abandoned there and counted
// as failed. Meanwhile `listeners` WebSocket clients (the same user)
// subscribed to erp.orders note when each erp.order.paid arrives; its
// latency is taken from the moment the payment's 201 had been read (and,
// like the CRM intake, from the moment the payment was sent). One process,
// one monotonic clock. At the end GET /v1/erp/checks must report ok.

var erpSteps = [...]string{"create", "confirm", "invoice", "pay", "ship"}

type stepFigures struct {
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	Count int     `json:"count"`
}

type salesResult struct {
	Clients           int                    `json:"clients"`
	Seconds           int                    `json:"seconds"`
	Products          int                    `json:"products"`
	Lines             int                    `json:"lines"`
	SeedSeconds       float64                `json:"seed_seconds"`
	Listeners         int                    `json:"listeners"`
	Connected         int                    `json:"connected"`
	ConnectFailed     int                    `json:"connect_failed"`
	ConnectError      string                 `json:"connect_error,omitempty"`
	OrdersStarted     int                    `json:"orders_started"`
	OrdersCompleted   int                    `json:"orders_completed"`
	OrdersFailed      int                    `json:"orders_failed"`
	FailedStatuses    string                 `json:"failed_statuses"`
	FirstError        string                 `json:"first_error,omitempty"`
	RunSeconds        float64                `json:"run_seconds"`
	OrdersPerSec      float64                `json:"orders_per_sec"`
	RequestsPerSec    float64                `json:"requests_per_sec"`
	Steps             map[string]stepFigures `json:"-"` // printed flat: <step>_p50_ms ...
	FlowP50Ms         float64                `json:"flow_p50_ms"`
	FlowP99Ms         float64                `json:"flow_p99_ms"`
	PaidExpected      int                    `json:"paid_expected"`
	PaidDelivered     int                    `json:"paid_delivered"`
	PaidMissing       int                    `json:"paid_missing"`
	PaidDuplicates    int                    `json:"paid_duplicates"`
	PaidUnknown       int                    `json:"paid_unknown"`
	PaidBeforeAnswer  int                    `json:"paid_before_answer"`
	PaidAfterP50Ms    float64                `json:"paid_after_p50_ms"`
	PaidAfterP99Ms    float64                `json:"paid_after_p99_ms"`
	PaidAfterMaxMs    float64                `json:"paid_after_max_ms"`
	PaidAfterP99AllMs float64                `json:"paid_after_p99_all_ms"`
	PaidFromPostP50Ms float64                `json:"paid_from_post_p50_ms"`
	PaidFromPostP99Ms float64                `json:"paid_from_post_p99_ms"`
	Dropped           int                    `json:"dropped"`
	DropReasons       string                 `json:"drop_reasons,omitempty"`
	ChecksOK          bool                   `json:"checks_ok"`
	ChecksDetail      string                 `json:"checks_detail"`
	ChecksSeconds     float64                `json:"checks_seconds"`
	ServerCPUPct      float64                `json:"server_cpu_pct"`
	ClientCPUPct      float64                `json:"client_cpu_pct"`
	RSSBeforeKiB      int64                  `json:"rss_before_kib"`
	RSSAfterKiB       int64                  `json:"rss_after_kib"`
}

// salesOrder: what the flow notes of one order, by its sequence number.
type salesOrder struct {
	id       string
	paySent  int64 // ns since base; 0: not paid
	payDone  int64 // when the payment's 201 had been read
	paidOK   bool
	complete bool
}

// paidListener is one WebSocket client waiting for erp.order.paid.
type paidListener struct {
	conn    *websocket.Conn
	wmu     sync.Mutex
	arrived map[int]int64 // order seq -> ns since base, first arrival
	dups    int
	unknown int
	err     string
}

type salesRun struct {
	api     *erpAPI
	cat     *stockedCatalog
	lines   int
	tag     string
	base    time.Time
	mu      sync.Mutex
	orders  []*salesOrder
	byID    sync.Map // order id -> seq
	steps   [len(erpSteps)]timings
	flow    timings
	fails   statusCounts
	stopped atomic.Bool
}

func (r *salesRun) now() int64 { return int64(time.Since(r.base)) }

func runErpSales(args []string) error {
	fs := flag.NewFlagSet("erp-sales", flag.ExitOnError)
	httpBase := fs.String("http", "", "base URL of the HTTP API (http://127.0.0.1:PORT)")
	wsURL := fs.String("ws", "", "WebSocket URL (ws://127.0.0.1:PORT/v1/ws)")
	token := fs.String("token", "", "an owner's access token (every request and listener uses it)")
	clients := fs.Int("clients", 32, "clients running the flow, each one order at a time")
	seconds := fs.Int("seconds", 30, "time new orders are started in (orders under way then are finished)")
	products := fs.Int("products", 1000, "products made and stocked before the run")
	lines := fs.Int("lines", 3, "lines per order (different products)")
	stock := fs.Int64("stock", 1000000, "units of each product received before the run")
	listeners := fs.Int("listeners", 1, "WebSocket clients subscribed to erp.orders")
	pid := fs.Int("pid", 0, "server process id, for CPU and RSS (0: not measured)")
	timeout := fs.Duration("request-timeout", 60*time.Second, "a request unanswered this long counts as failed")
	drain := fs.Duration("drain", 30*time.Second, "wait at most this long after the last order for erp.order.paid events still on the way (stops earlier once nothing arrives for 5 s)")
	fs.Parse(args)

	if *clients < 1 || *seconds < 1 || *products < 1 || *lines < 1 || *lines > *products || *listeners < 0 {
		return errors.New("-clients, -seconds, -products and -lines must be positive, -lines at most -products")
	}
	if *httpBase == "" || (*wsURL == "" && *listeners > 0) {
		return errors.New("erp-sales needs -http and -ws")
	}
	if *token == "" {
		return errNoToken
	}
	debug.SetGCPercent(400)
	res := salesResult{Clients: *clients, Seconds: *seconds, Products: *products, Lines: *lines,
		Listeners: *listeners, Steps: map[string]stepFigures{}}
	api := &erpAPI{base: *httpBase, token: *token, hc: newHTTPClient(*clients+16, *timeout)}
	tag := runTag()

	// ---- seed: a warehouse and its stocked products ----
	logf("erp-sales: seeding a warehouse and %d products with %d units each", *products, *stock)
	t0 := time.Now()
	cat, err := seedCatalog(api, "S"+tag+"-", *products, *stock, 16)
	if err != nil {
		return fmt.Errorf("seeding: %w", err)
	}
	res.SeedSeconds = time.Since(t0).Seconds()
	logf("seeded in %.1fs", res.SeedSeconds)

	r := &salesRun{api: api, cat: cat, lines: *lines, tag: tag, base: time.Now()}

	// ---- listeners ----
	var ls []*paidListener
	var lwg sync.WaitGroup
	if *listeners > 0 {
		dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second}
		for i := 0; i < *listeners; i++ {
			l, err := dialPaidListener(dialer, *wsURL, *token)
			if err != nil {
				res.ConnectFailed++
				if res.ConnectError == "" {
					res.ConnectError = err.Error()
				}
				continue
			}
			ls = append(ls, l)
			lwg.Add(1)
			go l.read(r, &lwg)
		}
		res.Connected = len(ls)
		logf("%d listeners subscribed to erp.orders, %d failed %s", res.Connected, res.ConnectFailed, res.ConnectError)
		if res.Connected == 0 {
			printFlat(res, res.Steps)
			return errors.New("no listener could connect")
		}
	}
	stopPing := make(chan struct{})
	go pingListeners(ls, stopPing)

	// ---- the flow: a closed loop per client ----
	res.RSSBeforeKiB = readRSS(*pid)
	cpuServer0, cpuClient0, wall0 := serverCPU(*pid), clientCPU(), time.Now()
	logf("%d clients running create -> confirm -> invoice -> pay -> ship for %ds", *clients, *seconds)
	start := time.Now()
	stopAt := start.Add(time.Duration(*seconds) * time.Second)
	var cwg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		cwg.Add(1)
		go func(c int) {
			defer cwg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 0x5a1e5))
			for time.Now().Before(stopAt) {
				r.order(rng)
			}
		}(c)
	}
	cwg.Wait()
	res.RunSeconds = time.Since(start).Seconds()
	r.stopped.Store(true)

	r.mu.Lock()
	orders := r.orders
	r.mu.Unlock()
	res.OrdersStarted = len(orders)
	paidOK := 0
	for _, o := range orders {
		if o.complete {
			res.OrdersCompleted++
		}
		if o.paidOK {
			paidOK++
		}
	}
	res.OrdersFailed = r.fails.total()
	res.FailedStatuses = r.fails.describe()
	res.FirstError = r.fails.first
	res.OrdersPerSec = float64(res.OrdersCompleted) / res.RunSeconds
	for i, name := range erpSteps {
		p50, p99 := r.steps[i].percentiles()
		res.Steps[name] = stepFigures{P50Ms: p50, P99Ms: p99, Count: len(r.steps[i].ns)}
		res.RequestsPerSec += float64(len(r.steps[i].ns)) / res.RunSeconds
	}
	res.FlowP50Ms, res.FlowP99Ms = r.flow.percentiles()
	logf("%d orders started in %.1fs, %d completed (%.1f orders/s, %.0f requests/s), %d failed %s",
		res.OrdersStarted, res.RunSeconds, res.OrdersCompleted, res.OrdersPerSec, res.RequestsPerSec,
		res.OrdersFailed, res.FailedStatuses)

	// ---- drain: every paid order at every listener, or nothing moves ----
	want := paidOK * len(ls)
	deadline := time.Now().Add(*drain)
	prev, lastMove := -1, time.Now()
	for len(ls) > 0 && time.Now().Before(deadline) {
		got := 0
		for _, l := range ls {
			l.wmu.Lock()
			got += len(l.arrived)
			l.wmu.Unlock()
		}
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
	close(stopPing)
	for _, l := range ls {
		l.wmu.Lock()
		l.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		l.wmu.Unlock()
		l.conn.Close()
	}
	lwg.Wait()
	r.paidFigures(ls, &res)

	// ---- the invariants after the run ----
	res.ChecksOK, res.ChecksDetail, res.ChecksSeconds, err = erpChecks(api)
	if err != nil {
		res.ChecksDetail = err.Error()
	}
	logf("GET /v1/erp/checks in %.1fs: ok=%v %s", res.ChecksSeconds, res.ChecksOK, res.ChecksDetail)
	return printFlat(res, res.Steps)
}

// printFlat prints res with each step's figures as top-level keys
// (create_p50_ms, create_p99_ms, create_count, ...), which is what
// bench.sh reads.
func printFlat(res salesResult, steps map[string]stepFigures) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for name, f := range steps {
		m[name+"_p50_ms"], m[name+"_p99_ms"], m[name+"_count"] = f.P50Ms, f.P99Ms, f.Count
	}
	return printJSON(m)
}

// order runs one order through the flow; a step answered otherwise than
// expected ends it.
func (r *salesRun) order(rng *rand.Rand) {
	o := &salesOrder{}
	r.mu.Lock()
	seq := len(r.orders)
	r.orders = append(r.orders, o)
	r.mu.Unlock()
	flowStart := time.Now()

	// lines of different products, 1 to 5 units at the product's price
	picked := make([]int, 0, r.lines)
	for len(picked) < r.lines {
		p := rng.IntN(len(r.cat.products))
		if !slices.Contains(picked, p) {
			picked = append(picked, p)
		}
	}
	type line struct {
		ProductID string `json:"product_id"`
		Quantity  int    `json:"quantity"`
		UnitPrice *money `json:"unit_price,omitempty"`
	}
	orderLines := make([]line, len(picked))
	shipLines := make([]line, len(picked))
	for i, p := range picked {
		q := 1 + rng.IntN(5)
		price := eur(r.cat.prices[p])
		orderLines[i] = line{ProductID: r.cat.products[p], Quantity: q, UnitPrice: &price}
		shipLines[i] = line{ProductID: r.cat.products[p], Quantity: q}
	}
	body, _ := json.Marshal(map[string]any{"warehouse_id": r.cat.warehouse, "currency": "EUR", "lines": orderLines})
	var created struct {
		ID    string `json:"id"`
		Total money  `json:"total"`
	}
	text, ok := r.step(0, "POST", "/v1/erp/orders", body, "", 201)
	if !ok {
		return
	}
	if json.Unmarshal(text, &created) != nil || created.ID == "" {
		r.fails.add("create", 201, text, errors.New("201 without an order id"))
		return
	}
	o.id = created.ID
	r.byID.Store(created.ID, seq)
	path := "/v1/erp/orders/" + created.ID
	if _, ok := r.step(1, "POST", path+"/confirm", nil, "", 200); !ok {
		return
	}
	if _, ok := r.step(2, "POST", path+"/invoice", nil, "", 201); !ok {
		return
	}
	pay, _ := json.Marshal(map[string]any{"amount": created.Total, "method": "bank", "reference": "bench " + created.ID})
	o.paySent = r.now()
	if _, ok := r.step(3, "POST", path+"/payments", pay, fmt.Sprintf("pay-%s-%d", r.tag, seq), 201); !ok {
		return
	}
	o.payDone = r.now()
	o.paidOK = true
	ship, _ := json.Marshal(map[string]any{"lines": shipLines})
	if _, ok := r.step(4, "POST", path+"/shipments", ship, fmt.Sprintf("ship-%s-%d", r.tag, seq), 201); !ok {
		return
	}
	o.complete = true
	r.flow.add(time.Since(flowStart))
}

// step sends one request of the flow and times it; false (and counted)
// unless the answer is want.
func (r *salesRun) step(i int, method, path string, body []byte, key string, want int) ([]byte, bool) {
	t0 := time.Now()
	status, text, err := r.api.call(method, path, body, key)
	r.steps[i].add(time.Since(t0))
	if err != nil || status != want {
		r.fails.add(erpSteps[i], status, text, err)
		return text, false
	}
	return text, true
}

func dialPaidListener(d *websocket.Dialer, url, token string) (*paidListener, error) {
	conn, resp, err := d.Dial(url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	auth, _ := json.Marshal(map[string]any{"type": "auth", "token": token, "topics": []string{"erp.orders"}})
	if err := trellisAuth(conn, auth, "erp.orders", time.Now().Add(30*time.Second)); err != nil {
		conn.Close()
		return nil, err
	}
	return &paidListener{conn: conn, arrived: map[int]int64{}}, nil
}

// read notes the arrival of every erp.order.paid frame.
func (l *paidListener) read(r *salesRun, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		_, msg, err := l.conn.ReadMessage()
		if err != nil {
			if !r.stopped.Load() {
				l.err = closeCode(err)
			}
			return
		}
		at := r.now()
		var ev struct {
			Type     string `json:"type"`
			Event    string `json:"event"`
			EntityID string `json:"entity_id"`
		}
		if json.Unmarshal(msg, &ev) != nil || ev.Type != "event" || ev.Event != "erp.order.paid" {
			continue
		}
		v, known := r.byID.Load(ev.EntityID)
		l.wmu.Lock()
		if !known {
			l.unknown++
		} else if _, seen := l.arrived[v.(int)]; seen {
			l.dups++
		} else {
			l.arrived[v.(int)] = at
		}
		l.wmu.Unlock()
	}
}

// pingListeners keeps idle listeners connected.
func pingListeners(ls []*paidListener, stop chan struct{}) {
	tk := time.NewTicker(20 * time.Second)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		for _, l := range ls {
			l.wmu.Lock()
			l.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			l.conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`))
			l.wmu.Unlock()
		}
	}
}

// paidFigures: erp.order.paid latency over every (listener, paid order)
// pair, from the payment's 201 and from sending it.
func (r *salesRun) paidFigures(ls []*paidListener, res *salesResult) {
	var after, fromPost []int64
	reasons := map[string]int{}
	// An order is paid when its payment was answered 201, or when its
	// event reached a listener although no 201 was read (a timeout, say):
	// every listener should get each paid order once.
	paid := make([]bool, len(r.orders))
	for seq, o := range r.orders {
		paid[seq] = o.paidOK
	}
	for _, l := range ls {
		for seq := range l.arrived {
			paid[seq] = true
		}
	}
	events := 0
	for _, p := range paid {
		if p {
			events++
		}
	}
	res.PaidExpected = events * len(ls)
	for _, l := range ls {
		res.PaidDuplicates += l.dups
		res.PaidUnknown += l.unknown
		if l.err != "" {
			res.Dropped++
			reasons[l.err]++
		}
		for seq, at := range l.arrived {
			res.PaidDelivered++
			o := r.orders[seq]
			if !o.paidOK {
				continue // no answer to time from
			}
			after = append(after, at-o.payDone)
			fromPost = append(fromPost, at-o.paySent)
			if at < o.payDone {
				res.PaidBeforeAnswer++
			}
		}
	}
	res.DropReasons = describeCounts(reasons)
	res.PaidMissing = max(0, res.PaidExpected-res.PaidDelivered)
	res.PaidAfterP99AllMs = -1
	if len(after) == 0 {
		return
	}
	slices.Sort(after)
	slices.Sort(fromPost)
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	res.PaidAfterP50Ms = ms(after[len(after)/2])
	res.PaidAfterP99Ms = ms(after[percentileIndex(len(after), 0.99)])
	res.PaidAfterMaxMs = ms(after[len(after)-1])
	res.PaidFromPostP50Ms = ms(fromPost[len(fromPost)/2])
	res.PaidFromPostP99Ms = ms(fromPost[percentileIndex(len(fromPost), 0.99)])
	// the p99 with a missing pair counting as later than any delivered:
	// -1 when more than 1% are missing
	if i := percentileIndex(res.PaidExpected, 0.99); i < len(after) {
		res.PaidAfterP99AllMs = ms(after[i])
	}
	logf("erp.order.paid: %d of %d delivered (%d duplicates, %d unknown); after the 201 p50 %.1f ms p99 %.1f ms max %.1f ms (%d before the 201); from sending the payment p50 %.1f ms p99 %.1f ms",
		res.PaidDelivered, res.PaidExpected, res.PaidDuplicates, res.PaidUnknown, res.PaidAfterP50Ms,
		res.PaidAfterP99Ms, res.PaidAfterMaxMs, res.PaidBeforeAnswer, res.PaidFromPostP50Ms, res.PaidFromPostP99Ms)
}
