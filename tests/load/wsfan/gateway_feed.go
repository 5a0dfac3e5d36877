package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The changes feed over a long stream (bench.sh section `gateway`):
//
//	gw-fill     appends N entries to a tenant's event stream straight in
//	            Redis, each a copy of the newest entry the server wrote there
//	            (a lead's crm.lead.created) under a fresh entity id
//	gw-changes  N clients page GET /v1/changes?limit=L, following next, each
//	            from its own point of the stream

// ---- a minimal RESP client: what gw-fill needs ----

type resp struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func respDial(addr string) (*resp, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &resp{c: c, r: bufio.NewReaderSize(c, 1<<16), w: bufio.NewWriterSize(c, 1<<20)}, nil
}

// send writes one command (a RESP array of bulk strings) to the buffer.
func (p *resp) send(args ...string) {
	fmt.Fprintf(p.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(p.w, "$%d\r\n", len(a))
		p.w.WriteString(a)
		p.w.WriteString("\r\n")
	}
}

// read reads one reply: string, int64, nil, []any, or an error reply as
// error.
func (p *resp) read() (any, error) {
	line, err := p.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty RESP line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, fmt.Errorf("redis: %s", line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(p.r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = p.read(); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected RESP line %q", line)
}

func (p *resp) do(args ...string) (any, error) {
	p.send(args...)
	if err := p.w.Flush(); err != nil {
		return nil, err
	}
	return p.read()
}

type fillResult struct {
	Events      int     `json:"events"`
	Seconds     float64 `json:"seconds"`
	PerSec      float64 `json:"per_sec"`
	StreamLen   int64   `json:"stream_len"`
	First       string  `json:"first_id"`
	Last        string  `json:"last_id"`
	EntryBytes  int     `json:"entry_bytes"` // the copied entry's b field
	MemoryAdded int64   `json:"redis_memory_added_bytes"`
}

var entityRe = regexp.MustCompile(`"entity_id":"([0-9a-f]{24})"`)

func runGwFill(args []string) error {
	fs := flag.NewFlagSet("gw-fill", flag.ExitOnError)
	addr := fs.String("redis", "", "Redis host:port (database 0)")
	tenant := fs.String("tenant", "", "the tenant's id")
	events := fs.Int("events", 1000000, "entries to append")
	fs.Parse(args)
	if *addr == "" || *tenant == "" || *events < 1 {
		return errors.New("-redis, -tenant and -events >= 1 are required")
	}
	key := "t:{" + *tenant + "}:events"
	p, err := respDial(*addr)
	if err != nil {
		return err
	}
	defer p.c.Close()

	// the template: the newest entry, fields t, o, b as the server wrote them
	r, err := p.do("XREVRANGE", key, "+", "-", "COUNT", "1")
	if err != nil {
		return err
	}
	list, _ := r.([]any)
	if len(list) != 1 {
		return fmt.Errorf("%s holds no entry to copy", key)
	}
	entry, _ := list[0].([]any)
	if len(entry) != 2 {
		return fmt.Errorf("unexpected entry %v", list[0])
	}
	kv, _ := entry[1].([]any)
	fields := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		k, _ := kv[i].(string)
		v, _ := kv[i+1].(string)
		fields[k] = v
	}
	tail, topic, owner := fields["b"], fields["t"], fields["o"]
	m := entityRe.FindStringSubmatch(tail)
	if topic == "" || m == nil {
		return fmt.Errorf("the newest entry of %s is not an event with an entity id: %v", key, fields)
	}
	parts := strings.Split(tail, m[1]) // every place the entity id is named
	memory := func() int64 {
		r, err := p.do("INFO", "memory")
		if err != nil {
			return 0
		}
		s, _ := r.(string)
		for _, line := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return 0
	}
	mem0 := memory()
	logf("appending %d copies of %s's newest entry (%s, %d bytes) to %s", *events, topic, m[1], len(tail), key)

	t0 := time.Now()
	errc := make(chan error, 1)
	go func() { // the replies, read while the commands are written
		for i := 0; i < *events; i++ {
			if _, err := p.read(); err != nil {
				errc <- fmt.Errorf("XADD %d: %w", i, err)
				return
			}
		}
		errc <- nil
	}()
	stamp := fmt.Sprintf("%08x", uint32(t0.Unix()))
	var b strings.Builder
	for i := 0; i < *events; i++ {
		id := fmt.Sprintf("%s%016x", stamp, uint64(i))
		b.Reset()
		b.WriteString(parts[0])
		for _, part := range parts[1:] {
			b.WriteString(id)
			b.WriteString(part)
		}
		p.send("XADD", key, "*", "t", topic, "o", owner, "b", b.String())
		if i%100000 == 99999 {
			logf("%d entries written", i+1)
		}
	}
	if err := p.w.Flush(); err != nil {
		return err
	}
	if err := <-errc; err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	res := fillResult{Events: *events, Seconds: secs, PerSec: float64(*events) / secs, EntryBytes: len(tail)}
	if r, err := p.do("XLEN", key); err == nil {
		res.StreamLen, _ = r.(int64)
	}
	for _, dir := range []string{"XRANGE", "XREVRANGE"} {
		from, to := "-", "+"
		if dir == "XREVRANGE" {
			from, to = "+", "-"
		}
		r, err := p.do(dir, key, from, to, "COUNT", "1")
		if err != nil {
			return err
		}
		if l, _ := r.([]any); len(l) == 1 {
			e, _ := l[0].([]any)
			id, _ := e[0].(string)
			if dir == "XRANGE" {
				res.First = id
			} else {
				res.Last = id
			}
		}
	}
	res.MemoryAdded = memory() - mem0
	logf("%d entries in %.1f s (%.0f/s); the stream holds %d, %s .. %s", *events, secs, res.PerSec,
		res.StreamLen, res.First, res.Last)
	return printJSON(res)
}

type changesResult struct {
	Clients     int     `json:"clients"`
	Limit       int     `json:"limit"`
	Seconds     float64 `json:"seconds"`
	Pages       int     `json:"pages"`
	PagesPerSec float64 `json:"pages_per_sec"`
	ItemsPerSec float64 `json:"items_per_sec"`
	MiBPerSec   float64 `json:"mib_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	Failed      int     `json:"failed"`
	FirstError  string  `json:"first_error,omitempty"`
	ShortPages  int     `json:"short_pages"` // pages with has_more but fewer than limit items
	Gaps        int     `json:"gaps"`        // a page whose first id is not after the previous next
	Wraps       int     `json:"wraps"`       // walks that reached the end and began again
	ServerCPU   float64 `json:"server_cpu_pct"`
	ClientCPU   float64 `json:"client_cpu_pct"`
	cpuFigures
}

// evid is a stream id as two numbers, for ordering.
func evid(s string) (ms, seq uint64, ok bool) {
	a, b, found := strings.Cut(s, "-")
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return x, y, found && err1 == nil && err2 == nil
}

func evidAfter(a, b string) bool {
	am, as, _ := evid(a)
	bm, bs, _ := evid(b)
	return am > bm || (am == bm && as > bs)
}

func runGwChanges(args []string) error {
	fs := flag.NewFlagSet("gw-changes", flag.ExitOnError)
	httpBase := fs.String("http", "", "the server's base URL (http://127.0.0.1:PORT)")
	token := fs.String("token", "", "an access token of the tenant")
	clients := fs.Int("clients", 8, "clients paging at once, each one request at a time")
	seconds := fs.Int("seconds", 20, "seconds of paging")
	limit := fs.Int("limit", 500, "items per page")
	first := fs.String("first", "", "the stream's oldest id (client 0 starts before it)")
	last := fs.String("last", "", "the stream's newest id; the clients' starts are spread between the two")
	pid := fs.Int("pid", 0, "server pid, for its CPU")
	cpuPids := fs.String("cpu-pids", "", "name=pid,... other processes whose CPU is reported over the run")
	fs.Parse(args)
	fms, _, ok1 := evid(*first)
	lms, _, ok2 := evid(*last)
	if *httpBase == "" || *token == "" || *clients < 1 || *seconds < 1 || *limit < 1 || !ok1 || !ok2 {
		return errors.New("-http, -token, -first and -last (stream ids) are required")
	}
	hc := newHTTPClient(*clients, 60*time.Second)

	type page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
		Next    string `json:"next"`
		HasMore bool   `json:"has_more"`
	}
	var (
		mu        sync.Mutex
		times     []float64
		items     int64
		bytesRead int64
		res       = changesResult{Clients: *clients, Limit: *limit}
	)
	fail := func(msg string) {
		mu.Lock()
		res.Failed++
		if res.FirstError == "" {
			res.FirstError = msg
		}
		mu.Unlock()
	}
	var stop atomic.Bool
	cpu0, server0, client0, wall0 := takeCPU(*cpuPids), serverCPU(*pid), clientCPU(), time.Now()
	var wg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			since := ""
			if c > 0 { // a point c/clients of the way along the stream
				since = fmt.Sprintf("%d-0", fms+(lms-fms)*uint64(c)/uint64(*clients))
			}
			var local []float64
			var localItems, localBytes int64
			for !stop.Load() {
				url := fmt.Sprintf("%s/v1/changes?limit=%d", *httpBase, *limit)
				if since != "" {
					url += "&since=" + since
				}
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("Authorization", "Bearer "+*token)
				t0 := time.Now()
				r, err := hc.Do(req)
				if err != nil {
					fail(err.Error())
					time.Sleep(100 * time.Millisecond)
					continue
				}
				body, err := io.ReadAll(r.Body)
				r.Body.Close()
				el := float64(time.Since(t0)) / 1e6
				if err != nil || r.StatusCode != 200 {
					fail(fmt.Sprintf("GET %s: %d %.200s", url, r.StatusCode, body))
					time.Sleep(100 * time.Millisecond)
					continue
				}
				// Read cheaply (the client shares the server's cores);
				// every 20th page is decoded in full and must agree.
				nitems, firstID, next, hasMore, ok := skimPage(body)
				if !ok {
					fail(fmt.Sprintf("GET %s: not a page: %.200s", url, body))
					continue
				}
				if len(local)%20 == 0 {
					var pg page
					if err := json.Unmarshal(body, &pg); err != nil || len(pg.Items) != nitems ||
						pg.Next != next || pg.HasMore != hasMore || (nitems > 0 && pg.Items[0].ID != firstID) {
						fail(fmt.Sprintf("GET %s: the page read two ways differs (%d items, next %s): %.200s",
							url, nitems, next, body))
						continue
					}
				}
				local = append(local, el)
				localItems += int64(nitems)
				localBytes += int64(len(body))
				mu.Lock()
				if hasMore && nitems < *limit {
					res.ShortPages++
				}
				if since != "" && nitems > 0 && !evidAfter(firstID, since) {
					res.Gaps++
				}
				if !hasMore {
					res.Wraps++
				}
				mu.Unlock()
				if hasMore {
					since = next
				} else {
					since = "" // the end: from the oldest again
				}
			}
			mu.Lock()
			times = append(times, local...)
			items += localItems
			bytesRead += localBytes
			mu.Unlock()
		}(c)
	}
	time.Sleep(time.Duration(*seconds) * time.Second)
	stop.Store(true)
	wg.Wait()
	wall := time.Since(wall0).Seconds()
	slices.Sort(times)
	res.Seconds = wall
	res.Pages = len(times)
	res.PagesPerSec = float64(len(times)) / wall
	res.ItemsPerSec = float64(items) / wall
	res.MiBPerSec = float64(bytesRead) / wall / (1 << 20)
	res.P50Ms, res.P99Ms = pct(times, 0.50), pct(times, 0.99)
	if len(times) > 0 {
		res.MaxMs = times[len(times)-1]
	}
	res.ServerCPU = 100 * (serverCPU(*pid) - server0) / wall
	res.ClientCPU = 100 * (clientCPU() - client0) / wall
	res.cpuFigures = cpu0.since(takeCPU(*cpuPids), wall)
	logf("%d pages in %.1f s: %.1f pages/s, p50 %.1f ms, p99 %.1f ms, %d failed",
		res.Pages, wall, res.PagesPerSec, res.P50Ms, res.P99Ms, res.Failed)
	return printJSON(res)
}

// skimPage reads a GET /v1/changes answer without decoding it: the items
// counted by their entity_id members (the frames have one each, a lead's
// data none), the first item's id, and next and has_more from the end.
func skimPage(body []byte) (n int, first, next string, hasMore, ok bool) {
	const head = `{"items":[`
	if !bytes.HasPrefix(body, []byte(head)) {
		return
	}
	n = bytes.Count(body, []byte(`"entity_id":`))
	if rest, found := bytes.CutPrefix(body[len(head):], []byte(`{"id":"`)); found {
		if i := bytes.IndexByte(rest, '"'); i > 0 {
			first = string(rest[:i])
		}
	}
	i := bytes.LastIndex(body, []byte(`"next":"`))
	if i < 0 {
		return
	}
	rest := body[i+len(`"next":"`):]
	j := bytes.IndexByte(rest, '"')
	if j <= 0 {
		return
	}
	next = string(rest[:j])
	tail := rest[j+1:]
	switch {
	case bytes.HasPrefix(tail, []byte(`,"has_more":true}`)):
		hasMore = true
	case bytes.HasPrefix(tail, []byte(`,"has_more":false}`)):
	default:
		return
	}
	return n, first, next, hasMore, true
}
