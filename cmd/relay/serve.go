package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	apiAddr := fs.String("api-listen", envOr("RELAY_API_LISTEN", ":2470"), "public API listen address (env RELAY_API_LISTEN)")
	adminAddr := fs.String("admin-listen", envOr("RELAY_METRICS_LISTEN", ":2471"), "admin, metrics and pprof listen address (env RELAY_METRICS_LISTEN)")
	_ = fs.String("data-dir", envOr("RELAY_DATA_DIR", "./data"), "directory of the embedded Pebble database (env RELAY_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	api := http.NewServeMux()
	api.HandleFunc("GET /xrpc/_health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	admin := http.NewServeMux()
	admin.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		metrics.WritePrometheus(w, true)
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	for _, s := range []struct {
		addr string
		h    http.Handler
	}{{*apiAddr, api}, {*adminAddr, admin}} {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return err
		}
		log.Info("listening", "addr", ln.Addr().String())
		srv := &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- srv.Serve(ln) }()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
