// Command relay runs the AT Protocol relay and its companion tools.
//
// Usage:
//
//	relay serve [flags]      run the relay
//	relay splitter [flags]   follow one relay and serve its firehose with its seqs
//	relay admin <command>    call the admin API of a running relay
//	relay migrate [flags]    take over a reference relay's hosts, bans, takedowns and seq
//	relay capture [flags]    record subscribeRepos endpoints into a capture file
//	relay replay [flags]     serve a capture as its original hosts plus a fake PLC
//	relay generate [flags]   write a synthetic capture (signed ahead of time)
//	relay bench [flags]      run a capture through a relay with consumers and report
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/atrelay/relay/bench/harness"
	"github.com/atrelay/relay/engine/admin"
	"github.com/atrelay/relay/engine/migrate"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = runServe(os.Args[2:])
	case "splitter":
		err = runSplitter(os.Args[2:])
	case "admin":
		err = admin.RunCLI(os.Args[2:], os.Stdout)
	case "migrate":
		err = migrate.RunCLI(os.Args[2:], os.Stdout)
	case "capture":
		err = runCapture(os.Args[2:], os.Stdout)
	case "replay":
		err = runReplay(os.Args[2:], os.Stdout)
	case "generate":
		err = runGenerate(os.Args[2:], os.Stdout)
	case "bench":
		err = runBench(os.Args[2:], os.Stdout)
	case "help", "-h", "--help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "relay: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// runBench is `relay bench`: the load harness's command line.
func runBench(args []string, stdout io.Writer) error { return harness.RunCLI(args, stdout) }

func usage() {
	fmt.Fprint(os.Stderr, `usage: relay <command> [flags]

commands:
  serve     run the relay (public API on :2470, admin/metrics/pprof on 127.0.0.1:2471; -h lists the settings)
  splitter  follow one relay and serve its firehose with its seqs (fan-out tier; -h lists the settings)
  admin     call the admin API (relay admin help)
  migrate   copy a running reference relay's hosts, bans, takedowns and seq into this database (--dry-run first)
  capture   record subscribeRepos endpoints into a capture file
  replay    serve a capture (file or shared-format folder) as its hosts plus a fake PLC
  generate  write a synthetic capture from the fleet's workload model
  bench     replay a capture through a relay with consumers and report figures
`)
}
