package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// erp-moves: stock moves per second (tests/load/bench.sh, BENCH_ONLY=erp)
// against several server processes on one database, the clients spread
// over them (client c talks to server c mod n). Two phases of `seconds`
// each, every client one move at a time, alternating a receipt of one
// unit (at a unit cost that varies, so the moving average has remainders
// to round) and a write-off of one unit (which leaves at that average):
//
//	hot:    every move on one product in one warehouse;
//	spread: each move on one of `products` products of another warehouse,
//	        picked at random.
//
// Each product starts with `stock` units, so no write-off can find too
// little. After each phase the stock is read back: on hand must equal the
// opening stock + the receipts answered 201 - the write-offs answered 201,
// per product, with nothing reserved. After both, GET /v1/erp/checks must
// report ok.

type movesPhase struct {
	Moves          int     `json:"moves"`
	Accepted       int     `json:"accepted"`
	Receipts       int     `json:"receipts"`
	WriteOffs      int     `json:"write_offs"`
	Failed         int     `json:"failed"`
	Statuses       string  `json:"statuses"`
	FirstError     string  `json:"first_error,omitempty"`
	Seconds        float64 `json:"seconds"`
	PerSec         float64 `json:"per_sec"`
	P50Ms          float64 `json:"p50_ms"`
	P99Ms          float64 `json:"p99_ms"`
	Products       int     `json:"products"`
	Mismatched     int     `json:"mismatched"`       // products whose stock is not the fold of the 201s
	FirstMismatch  string  `json:"first_mismatch"`   // the first of them
	OnHandExpected int64   `json:"on_hand_expected"` // summed over the phase's products
	OnHandFound    int64   `json:"on_hand_found"`
	ServerCPUPct   float64 `json:"server_cpu_pct"` // all servers together
	ClientCPUPct   float64 `json:"client_cpu_pct"`
}

type movesResult struct {
	Servers       int        `json:"servers"`
	Clients       int        `json:"clients"`
	PhaseSeconds  int        `json:"phase_seconds"`
	SeedSeconds   float64    `json:"seed_seconds"`
	Hot           movesPhase `json:"-"`
	Spread        movesPhase `json:"-"`
	ChecksOK      bool       `json:"checks_ok"`
	ChecksDetail  string     `json:"checks_detail"`
	ChecksSeconds float64    `json:"checks_seconds"`
}

func runErpMoves(args []string) error {
	fs := flag.NewFlagSet("erp-moves", flag.ExitOnError)
	httpList := fs.String("http", "", "base URLs of the servers, comma separated (http://127.0.0.1:PORT,...)")
	token := fs.String("token", "", "an owner's access token")
	clients := fs.Int("clients", 32, "clients, each one move at a time, spread over the servers")
	seconds := fs.Int("seconds", 20, "length of each phase")
	products := fs.Int("products", 1000, "products of the spread phase")
	stock := fs.Int64("stock", 1000000, "units of each product received before the run")
	pidList := fs.String("pids", "", "server process ids, comma separated, for CPU (empty: not measured)")
	timeout := fs.Duration("request-timeout", 60*time.Second, "a request unanswered this long counts as failed")
	fs.Parse(args)

	bases := splitList(*httpList)
	if len(bases) == 0 || *clients < 1 || *seconds < 1 || *products < 1 {
		return errors.New("erp-moves needs -http, and positive -clients, -seconds and -products")
	}
	if *token == "" {
		return errNoToken
	}
	var pids []int
	for _, s := range splitList(*pidList) {
		p, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("-pids: %q is not a process id", s)
		}
		pids = append(pids, p)
	}
	debug.SetGCPercent(400)
	apis := make([]*erpAPI, len(bases))
	for i, b := range bases {
		apis[i] = &erpAPI{base: b, token: *token, hc: newHTTPClient(*clients+16, *timeout)}
	}
	res := movesResult{Servers: len(bases), Clients: *clients, PhaseSeconds: *seconds}
	tag := runTag()

	logf("erp-moves: seeding a hot product and %d products with %d units each", *products, *stock)
	t0 := time.Now()
	hot, err := seedCatalog(apis[0], "H"+tag+"-", 1, *stock, 1)
	if err != nil {
		return fmt.Errorf("seeding: %w", err)
	}
	spread, err := seedCatalog(apis[0], "M"+tag+"-", *products, *stock, 16)
	if err != nil {
		return fmt.Errorf("seeding: %w", err)
	}
	res.SeedSeconds = time.Since(t0).Seconds()
	logf("seeded in %.1fs", res.SeedSeconds)

	res.Hot = movePhase("hot", apis, hot, *clients, *seconds, *stock, pids)
	res.Spread = movePhase("spread", apis, spread, *clients, *seconds, *stock, pids)

	res.ChecksOK, res.ChecksDetail, res.ChecksSeconds, err = erpChecks(apis[0])
	if err != nil {
		res.ChecksDetail = err.Error()
	}
	logf("GET /v1/erp/checks in %.1fs: ok=%v %s", res.ChecksSeconds, res.ChecksOK, res.ChecksDetail)

	// printed flat: hot_per_sec, spread_per_sec, ...
	out := map[string]any{}
	for prefix, v := range map[string]any{"": res, "hot_": res.Hot, "spread_": res.Spread} {
		b, _ := json.Marshal(v)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		for k, x := range m {
			out[prefix+k] = x
		}
	}
	return printJSON(out)
}

// movePhase runs one phase on the catalog's products and checks the stock
// it leaves.
func movePhase(name string, apis []*erpAPI, cat *stockedCatalog, clients, seconds int, stock int64, pids []int) movesPhase {
	ph := movesPhase{Products: len(cat.products)}
	receipts := make([]atomic.Int64, len(cat.products))
	writeOffs := make([]atomic.Int64, len(cat.products))
	var lat timings
	var fails statusCounts
	var sent atomic.Int64
	cpu := func() float64 {
		s := 0.0
		for _, p := range pids {
			s += serverCPU(p)
		}
		return s
	}

	logf("%s: %d clients over %d servers, one move at a time each, for %ds", name, clients, len(apis), seconds)
	cpuServer0, cpuClient0 := cpu(), clientCPU()
	start := time.Now()
	stopAt := start.Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			api := apis[c%len(apis)]
			rng := rand.New(rand.NewPCG(uint64(c), 0x3073))
			for k := 0; time.Now().Before(stopAt); k++ {
				p := rng.IntN(len(cat.products))
				seq := sent.Add(1)
				move := map[string]any{"product_id": cat.products[p], "warehouse_id": cat.warehouse, "quantity": 1}
				kind := "receipt"
				if k%2 == 0 {
					move["kind"] = "receipt"
					move["unit_cost"] = eur(cat.prices[p]/2 - 10 + seq%21)
				} else {
					kind = "write_off"
					move["kind"] = "write_off"
					move["reason"] = "bench write-off"
				}
				body, _ := json.Marshal(move)
				t0 := time.Now()
				status, text, err := api.call("POST", "/v1/erp/stock/moves", body, "")
				lat.add(time.Since(t0))
				if err != nil || status != 201 {
					fails.add(kind, status, text, err)
					continue
				}
				if kind == "receipt" {
					receipts[p].Add(1)
				} else {
					writeOffs[p].Add(1)
				}
			}
		}(c)
	}
	wg.Wait()
	ph.Seconds = time.Since(start).Seconds()
	ph.ServerCPUPct = 100 * (cpu() - cpuServer0) / ph.Seconds
	ph.ClientCPUPct = 100 * (clientCPU() - cpuClient0) / ph.Seconds
	ph.Moves = int(sent.Load())
	for p := range cat.products {
		ph.Receipts += int(receipts[p].Load())
		ph.WriteOffs += int(writeOffs[p].Load())
	}
	ph.Accepted = ph.Receipts + ph.WriteOffs
	ph.Failed = fails.total()
	ph.Statuses = fails.describe()
	ph.FirstError = fails.first
	ph.PerSec = float64(ph.Accepted) / ph.Seconds
	ph.P50Ms, ph.P99Ms = lat.percentiles()
	logf("%s: %d moves in %.1fs, %d answered 201 (%.1f/s: %d receipts, %d write-offs), %d failed %s; p50 %.1f ms p99 %.1f ms",
		name, ph.Moves, ph.Seconds, ph.Accepted, ph.PerSec, ph.Receipts, ph.WriteOffs, ph.Failed, ph.Statuses, ph.P50Ms, ph.P99Ms)

	// ---- the stock left: the fold of the moves answered 201 ----
	query := "warehouse_id=" + cat.warehouse
	if len(cat.products) == 1 {
		query += "&product_id=" + cat.products[0]
	}
	items, err := erpStock(apis[0], query)
	if err != nil {
		ph.Mismatched, ph.FirstMismatch = len(cat.products), "reading the stock: "+err.Error()
		return ph
	}
	found := map[string]stockItem{}
	for _, it := range items {
		found[it.ProductID] = it
	}
	for p, id := range cat.products {
		want := stock + receipts[p].Load() - writeOffs[p].Load()
		got, ok := found[id]
		ph.OnHandExpected += want
		ph.OnHandFound += got.OnHand
		if !ok || got.OnHand != want || got.Reserved != 0 || got.Available != got.OnHand {
			ph.Mismatched++
			if ph.FirstMismatch == "" {
				ph.FirstMismatch = fmt.Sprintf("product %s: on_hand %d (want %d), reserved %d, available %d",
					id, got.OnHand, want, got.Reserved, got.Available)
			}
		}
	}
	logf("%s: stock on hand %d, the fold of the 201s %d; %d products differ %s",
		name, ph.OnHandFound, ph.OnHandExpected, ph.Mismatched, ph.FirstMismatch)
	return ph
}
