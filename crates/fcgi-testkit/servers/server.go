// The test application of the compatibility matrix in Go: net/http/fcgi on
// the Unix socket given as the first argument. It answers the query strings
// described in app.py (Go's handlers cannot write FastCGI stderr: op=stderr
// logs to the process's own stderr).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	mu     sync.Mutex
	cond   = sync.NewCond(&mu)
	groups = map[string]int{}
)

func pattern(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(((i%251)*31 + 7) % 251)
	}
	return out
}

func handle(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch q.Get("op") {
	case "", "echo":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, r.URL.RawQuery)
	case "hash":
		h := sha256.New()
		io.Copy(h, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	case "big":
		n, _ := strconv.Atoi(q.Get("bytes"))
		w.Header().Set("Content-Type", "application/octet-stream")
		block := pattern(251 * 261)
		for n > 0 {
			k := len(block)
			if n < k {
				k = n
			}
			if _, err := w.Write(block[:k]); err != nil {
				return
			}
			n -= k
		}
	case "cookies":
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "cookies")
	case "notfound":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(404)
		io.WriteString(w, "missing")
	case "stderr":
		fmt.Fprintln(os.Stderr, "to-stderr")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok")
	case "barrier":
		group := q.Get("group")
		n, _ := strconv.Atoi(q.Get("n"))
		wait := 20000
		if ms, err := strconv.Atoi(q.Get("ms")); err == nil {
			wait = ms
		}
		deadline := time.Now().Add(time.Duration(wait) * time.Millisecond)
		go func() { time.Sleep(time.Duration(wait) * time.Millisecond); cond.Broadcast() }()
		mu.Lock()
		groups[group]++
		cond.Broadcast()
		for groups[group] < n && time.Now().Before(deadline) {
			cond.Wait()
		}
		ok := groups[group] >= n
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		if ok {
			io.WriteString(w, "together")
		} else {
			w.WriteHeader(504)
			io.WriteString(w, "alone")
		}
	default:
		w.WriteHeader(400)
		io.WriteString(w, "unknown op")
	}
}

func main() {
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(fcgi.Serve(l, http.HandlerFunc(handle)))
}
