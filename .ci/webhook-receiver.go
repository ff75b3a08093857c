//go:build ignore

// Webhook-receiver is the receiving end for .ci/image-check.sh: it accepts
// webhook POSTs on a loopback port, holds each one for -delay (so that the
// check can stop the relay while a delivery is in flight) and answers 204.
// It prints "listening ADDR" first, then one line per request:
// "received ID" when one arrives and "answered ID" when it is answered,
// where ID is the request's webhook-id header.
//
//	go run .ci/webhook-receiver.go -delay 3s
//
// It stops on SIGTERM or SIGINT, or after -lifetime at the latest.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback only)")
	delay := flag.Duration("delay", 0, "how long each request is held before the answer")
	lifetime := flag.Duration("lifetime", 5*time.Minute, "stop after this long in any case")
	flag.Parse()
	log.SetFlags(0)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if ip := ln.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		log.Fatalf("refusing to listen on %s: loopback only", ln.Addr())
	}
	fmt.Println("listening", ln.Addr())

	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		if r.Method != http.MethodPost || id == "" || r.Header.Get("webhook-signature") == "" {
			http.Error(w, "want a signed webhook POST", http.StatusBadRequest)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		fmt.Println("received", id)
		select {
		case <-time.After(*delay):
		case <-r.Context().Done():
			fmt.Println("abandoned", id)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		fmt.Println("answered", id)
	})}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *lifetime)
	defer cancel()
	go func() {
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), *delay+5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
