package faultsuite

import (
	"net"
	"sync"
	"testing"
)

// proxy forwards TCP connections to a target and can break them the ways a
// network does: drop every connection (both ends see it closed), refuse new
// ones (accepted and closed at once: a partition that fails fast), and
// stall (bytes stop moving both ways, nothing is closed: a partition that
// fails only by timeout).
type proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	conns    map[*link]struct{}
	refusing bool
	stalled  chan struct{} // non-nil while stalled; closed on resume
	closed   bool
	wg       sync.WaitGroup
}

// link is one proxied connection.
type link struct {
	client net.Conn
	gone   chan struct{} // closed when dropped

	mu     sync.Mutex
	server net.Conn
	done   bool
}

func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.done = true
	close(l.gone)
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

// connect sets the server side; false when the link was closed meanwhile.
func (l *link) connect(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return false
	}
	l.server = s
	return true
}

// newProxy listens on a free loopback port and forwards to target. It is
// closed when t ends.
func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[*link]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed || p.refusing {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		l := &link{client: c, gone: make(chan struct{})}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go func() {
			defer p.wg.Done()
			p.serve(l)
		}()
	}
}

func (p *proxy) serve(l *link) {
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	if !p.pass(l) {
		return
	}
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !l.connect(s) {
		_ = s.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(l, s, l.client) })
	wg.Go(func() { p.pipe(l, l.client, s) })
	wg.Wait()
}

// pipe copies src to dst, holding each chunk while the proxy is stalled.
func (p *proxy) pipe(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pass waits while the proxy is stalled; false means l was dropped.
func (p *proxy) pass(l *link) bool {
	for {
		p.mu.Lock()
		st := p.stalled
		p.mu.Unlock()
		if st == nil {
			return true
		}
		select {
		case <-st:
		case <-l.gone:
			return false
		}
	}
}

// drop closes every connection now; new ones are accepted.
func (p *proxy) drop() int {
	p.mu.Lock()
	ls := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		ls = append(ls, l)
	}
	p.mu.Unlock()
	for _, l := range ls {
		l.close()
	}
	return len(ls)
}

// partition drops every connection and refuses new ones until heal.
func (p *proxy) partition() int {
	p.mu.Lock()
	p.refusing = true
	p.mu.Unlock()
	return p.drop()
}

// stall stops all traffic, on open and new connections, until heal.
func (p *proxy) stall() {
	p.mu.Lock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
	p.mu.Unlock()
}

// heal ends a partition or a stall.
func (p *proxy) heal() {
	p.mu.Lock()
	p.refusing = false
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.heal()
	p.drop()
	p.wg.Wait()
}
