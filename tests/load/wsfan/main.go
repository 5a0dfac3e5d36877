// wsfan is the WebSocket load client of the Trellis benchmark
// (tests/load/bench.sh). It drives Trellis and Centrifugo with the same
// code and the same scenario, so their figures can be compared.
//
//	wsfan fanout -target trellis|centrifugo ...   N subscribers of one topic,
//	                                              events published at a fixed rate
//	wsfan resume ...                              one Trellis client catching up
//	                                              on events it missed
//	wsfan leads ...                               CRM intake: partners post leads
//	                                              through an API key while
//	                                              listeners wait for crm.leads events
//	wsfan erp-sales ...                           ERP: orders through create, confirm,
//	                                              invoice, pay and ship while a
//	                                              listener waits for erp.order.paid
//	wsfan erp-moves ...                           ERP: stock moves on one hot product
//	                                              and spread over many, across servers
//	wsfan bpm-flow ...                            BPM: instances through a service step,
//	                                              a user task (its bpm.task.assigned
//	                                              awaited on a WebSocket) and a gateway
//	wsfan bpm-inbox ...                           BPM: the first inbox page over many
//	                                              open tasks
//	wsfan gw-hooks ...                            gateway: leads at a steady rate, their
//	                                              webhook deliveries to a receiver here
//	                                              that fails a share of them
//	wsfan gw-fill ...                             gateway: a tenant's event stream filled
//	                                              straight in Redis
//	wsfan gw-changes ...                          gateway: GET /v1/changes pages, N clients
//
// Each mode prints one JSON object on stdout; progress goes to stderr.
// Run `wsfan MODE -h` for the flags.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "fanout":
		err = runFanout(os.Args[2:])
	case "resume":
		err = runResume(os.Args[2:])
	case "leads":
		err = runLeads(os.Args[2:])
	case "erp-sales":
		err = runErpSales(os.Args[2:])
	case "erp-moves":
		err = runErpMoves(os.Args[2:])
	case "bpm-flow":
		err = runBpmFlow(os.Args[2:])
	case "bpm-inbox":
		err = runBpmInbox(os.Args[2:])
	case "gw-hooks":
		err = runGwHooks(os.Args[2:])
	case "gw-fill":
		err = runGwFill(os.Args[2:])
	case "gw-changes":
		err = runGwChanges(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "wsfan %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: wsfan fanout|resume|leads|erp-sales|erp-moves|bpm-flow|bpm-inbox|gw-hooks|gw-fill|gw-changes [flags] (wsfan MODE -h for the flags)")
	os.Exit(2)
}

var started = time.Now()

// logf writes a progress line to stderr, prefixed with the seconds since
// start.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wsfan [%6.1fs] %s\n", time.Since(started).Seconds(), fmt.Sprintf(format, args...))
}

// printJSON writes v as one line on stdout.
func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}
