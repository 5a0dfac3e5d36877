package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// What the ERP modes (erp.go, erp_moves.go) share: requests to the ERP
// API with one user's token, the seeding of a warehouse and its stocked
// products through that API, and the figures made of many timings.

// erpAPI is one server's HTTP API, called with an owner's access token.
type erpAPI struct {
	base  string // http://127.0.0.1:PORT
	token string
	hc    *http.Client
}

// The largest answer read: GET /v1/erp/stock of a warehouse with 1,000
// products is about 150 KiB.
const maxAnswer = 16 << 20

// call sends one request (body nil: none) and returns the status and the
// answer (its first maxAnswer bytes); err only when no answer came.
func (a *erpAPI) call(method, path string, body []byte, idempotencyKey string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return resp.StatusCode, text, err
	}
	return resp.StatusCode, text, nil
}

// must sends one request that has to answer want, and decodes the answer
// into out (when not nil).
func (a *erpAPI) must(method, path string, body any, want int, out any) error {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return err
		}
	}
	status, text, err := a.call(method, path, b, "")
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want {
		return fmt.Errorf("%s %s: %d %.300s", method, path, status, strings.TrimSpace(string(text)))
	}
	if out != nil {
		if err := json.Unmarshal(text, out); err != nil {
			return fmt.Errorf("%s %s: answer is not the JSON expected: %.200s", method, path, text)
		}
	}
	return nil
}

type money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

func eur(amount int64) money { return money{Amount: amount, Currency: "EUR"} }

// stockedCatalog: a warehouse and products, each received into it.
type stockedCatalog struct {
	warehouse string
	products  []string
	prices    []int64 // each product's price, minor units
}

// seedCatalog makes a warehouse (code prefix+"W") and n products (SKU
// prefix+i, price and 20% tax), and receives stock units of each at a
// unit cost below its price, with `workers` requests in flight.
func seedCatalog(a *erpAPI, prefix string, n int, stock int64, workers int) (*stockedCatalog, error) {
	var wh struct {
		ID string `json:"id"`
	}
	if err := a.must("POST", "/v1/erp/warehouses", map[string]any{"code": prefix + "W", "name": "Bench " + prefix}, 201, &wh); err != nil {
		return nil, err
	}
	cat := &stockedCatalog{warehouse: wh.ID, products: make([]string, n), prices: make([]int64, n)}
	err := parallel(n, workers, func(i int) error {
		price := int64(500 + (i*37)%9500)
		var p struct {
			ID string `json:"id"`
		}
		if err := a.must("POST", "/v1/erp/products", map[string]any{
			"sku": fmt.Sprintf("%s%05d", prefix, i), "name": fmt.Sprintf("Bench product %d", i),
			"price": eur(price), "tax_rate_bp": 2000}, 201, &p); err != nil {
			return err
		}
		cat.products[i], cat.prices[i] = p.ID, price
		return a.must("POST", "/v1/erp/stock/moves", map[string]any{
			"kind": "receipt", "product_id": p.ID, "warehouse_id": wh.ID, "quantity": stock,
			"unit_cost": eur(price / 2), "reference": "bench opening stock"}, 201, nil)
	})
	return cat, err
}

// parallel runs fn(0..n-1) on `workers` goroutines; the first error stops
// the handing out of more.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

// erpChecks is GET /v1/erp/checks: whether every invariant holds, the
// names and details of those that do not, and how long it took.
func erpChecks(a *erpAPI) (ok bool, detail string, seconds float64, err error) {
	var body struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	t0 := time.Now()
	if err = a.must("GET", "/v1/erp/checks", nil, 200, &body); err != nil {
		return false, "", time.Since(t0).Seconds(), err
	}
	seconds = time.Since(t0).Seconds()
	if len(body.Checks) == 0 {
		return false, "no checks in the answer", seconds, nil
	}
	var parts []string
	for _, c := range body.Checks {
		if !c.OK {
			parts = append(parts, c.Name+": "+c.Detail)
		}
	}
	if body.OK != (len(parts) == 0) {
		parts = append(parts, "ok disagrees with the checks")
	}
	if len(parts) == 0 {
		var all []string
		for _, c := range body.Checks {
			all = append(all, c.Name+" ("+c.Detail+")")
		}
		return true, strings.Join(all, "; "), seconds, nil
	}
	return false, strings.Join(parts, "; "), seconds, nil
}

// stockItem is one row of GET /v1/erp/stock.
type stockItem struct {
	ProductID string `json:"product_id"`
	OnHand    int64  `json:"on_hand"`
	Reserved  int64  `json:"reserved"`
	Available int64  `json:"available"`
}

func erpStock(a *erpAPI, query string) ([]stockItem, error) {
	var body struct {
		Items []stockItem `json:"items"`
	}
	err := a.must("GET", "/v1/erp/stock?"+query, nil, 200, &body)
	return body.Items, err
}

// timings of one kind of request, nanoseconds; safe for concurrent adds.
type timings struct {
	mu sync.Mutex
	ns []int64
}

func (t *timings) add(d time.Duration) {
	t.mu.Lock()
	t.ns = append(t.ns, int64(d))
	t.mu.Unlock()
}

// percentiles: p50 and p99 in milliseconds (0, 0 when there are none).
func (t *timings) percentiles() (float64, float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.ns) == 0 {
		return 0, 0
	}
	s := slices.Clone(t.ns)
	slices.Sort(s)
	return float64(s[len(s)/2]) / 1e6, float64(s[percentileIndex(len(s), 0.99)]) / 1e6
}

// statusCounts counts the answers that were not the one wanted, by a
// label ("confirm 409"), keeping the first such answer's text.
type statusCounts struct {
	mu    sync.Mutex
	n     map[string]int
	first string
}

func (s *statusCounts) add(label string, status int, text []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == nil {
		s.n = map[string]int{}
	}
	what := fmt.Sprintf("%s %d", label, status)
	if status == 0 {
		what = label + " no answer"
	}
	s.n[what]++
	if s.first == "" {
		if err != nil {
			s.first = fmt.Sprintf("%s: %v", label, err)
		} else {
			s.first = fmt.Sprintf("%s: %d %.300s", label, status, strings.TrimSpace(string(text)))
		}
	}
}

func (s *statusCounts) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.n {
		n += v
	}
	return n
}

func (s *statusCounts) describe() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return describeCounts(s.n)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

var errNoToken = errors.New("needs -token (an owner's access token)")
