package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Publisher publishes outbox entries to RabbitMQ. It holds one connection,
// made when first needed and replaced when it closes, and a pool of
// confirm-mode channels on it. Build it with New; it is safe for
// concurrent use. Close it when the relay has stopped.
type Publisher struct {
	s *settings

	// slots holds one token per channel in use or idle: it bounds the
	// channels (and so the publishes in flight) to MaxChannels.
	slots chan struct{}

	// mu guards every field below.
	mu      sync.Mutex
	conn    *amqp.Connection
	dialing chan struct{} // closed when the dial under way ends; nil if none
	dialErr error         // the last failed dial, reported until redialDelay passes
	dialAt  time.Time
	idle    []*pubChannel // confirm-mode channels free for a publish
	closed  bool

	// closing counts the goroutines that close channels and connections
	// in the background (a close waits for the broker's reply, which a
	// stalled broker never sends); Close waits for them after closing the
	// connection, which ends every such wait.
	closing sync.WaitGroup
}

// pubChannel is one confirm-mode channel, used by one publish at a time,
// so that a confirm and a returned message on it belong to that publish.
type pubChannel struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return // basic.return; buffered, drained by every publish
	closes  chan *amqp.Error // the channel's closing error, if any
}

// New validates cfg and returns a Publisher. It does not connect: the
// first publish does (call Ping to check the broker at start-up). The
// error joins every problem found; each matches ErrInvalidConfig and is a
// *ConfigError naming the field.
func New(cfg Config) (*Publisher, error) {
	s, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Publisher{s: s, slots: make(chan struct{}, s.MaxChannels)}, nil
}

// Ping connects if the publisher is not connected, and opens and closes a
// channel: it reports whether the broker accepts the URL's credentials
// and virtual host.
func (p *Publisher) Ping(ctx context.Context) error {
	pc, err := p.borrow(ctx)
	if err != nil {
		return err
	}
	p.release(pc, true)
	return nil
}

// Close closes the connection and waits for the publisher's background
// work to end. Publishes under way fail; later ones return ErrClosed.
// Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conn := p.conn
	p.conn, p.idle = nil, nil
	p.mu.Unlock()
	var err error
	if conn != nil && !conn.IsClosed() {
		if cerr := conn.CloseDeadline(time.Now().Add(p.s.DialTimeout)); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = fmt.Errorf("rabbitmq: closing the connection to %s: %w", p.s.addr, cerr)
		}
	}
	p.closing.Wait()
	return err
}

// connection returns the current connection, dialing one if there is
// none: one dial at a time, which every caller waits for (or for its
// context).
func (p *Publisher) connection(ctx context.Context) (*amqp.Connection, error) {
	for {
		p.mu.Lock()
		switch {
		case p.closed:
			p.mu.Unlock()
			return nil, ErrClosed
		case p.conn != nil && !p.conn.IsClosed():
			c := p.conn
			p.mu.Unlock()
			return c, nil
		case p.dialing != nil:
			wait := p.dialing
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("rabbitmq: waiting for the connection to %s: %w", p.s.addr, context.Cause(ctx))
			}
		case p.dialErr != nil && time.Since(p.dialAt) < redialDelay:
			err := p.dialErr
			p.mu.Unlock()
			return nil, err
		}
		done := make(chan struct{})
		p.dialing = done
		p.mu.Unlock()
		p.closing.Add(1)
		go p.dial(ctx, done)
	}
}

// dial makes a connection and installs it, or records why it failed; it
// closes done when it is over. It runs aside, bounded by DialTimeout and
// not by the context of the publish that started it: its result serves
// every caller, and the callers wait for it as long as their own contexts
// allow.
func (p *Publisher) dial(ctx context.Context, done chan struct{}) {
	defer p.closing.Done()
	conn, err := amqp.DialConfig(p.s.URL, p.s.amqp)
	if err != nil {
		err = fmt.Errorf("rabbitmq: connecting to %s: %w", p.s.addr, dialError(err))
	}
	p.mu.Lock()
	lost := p.conn != nil
	p.dialing = nil
	close(done)
	switch {
	case err != nil:
		p.dialErr, p.dialAt = err, time.Now()
	case p.closed:
		p.closeConnAsync(conn)
	default:
		p.conn, p.dialErr, p.idle = conn, nil, nil
	}
	p.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	switch {
	case err != nil:
		p.s.Logger.WarnContext(ctx, "rabbitmq: cannot connect", "broker", p.s.addr, "err", err)
	case lost:
		p.s.Logger.InfoContext(ctx, "rabbitmq: reconnected", "broker", p.s.addr)
	default:
		p.s.Logger.DebugContext(ctx, "rabbitmq: connected", "broker", p.s.addr)
	}
}

// dialError keeps what the client says about a failed dial, without the
// URL (which holds the password) if the client quoted it.
func dialError(err error) error {
	var aerr *amqp.Error
	if errors.As(err, &aerr) {
		return aerr
	}
	return err
}

// borrow takes a confirm-mode channel for one publish: an idle one, or a
// new one on the current connection. Give it back with release.
func (p *Publisher) borrow(ctx context.Context) (*pubChannel, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("rabbitmq: waiting for one of %d channels (Config.MaxChannels): %w", p.s.MaxChannels, context.Cause(ctx))
	}
	pc, err := p.take(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return pc, nil
}

func (p *Publisher) take(ctx context.Context) (*pubChannel, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if pc.conn == p.conn && !pc.ch.IsClosed() {
			p.mu.Unlock()
			return pc, nil
		}
		p.discard(pc)
	}
	p.mu.Unlock()
	conn, err := p.connection(ctx)
	if err != nil {
		return nil, err
	}
	return p.open(ctx, conn)
}

// open opens a channel on conn and puts it in confirm mode. Both are
// calls that wait for the broker with no deadline of their own, so they
// run aside and open waits for them at most ConfirmTimeout (and ctx); a
// broker that does not answer in that time has its connection closed, so
// that the next publish makes a new one.
func (p *Publisher) open(ctx context.Context, conn *amqp.Connection) (*pubChannel, error) {
	type opened struct {
		pc  *pubChannel
		err error
	}
	res := make(chan opened, 1)
	p.closing.Add(1)
	go func() {
		defer p.closing.Done()
		ch, err := conn.Channel()
		if err != nil {
			res <- opened{err: err}
			return
		}
		pc := &pubChannel{conn: conn, ch: ch,
			returns: ch.NotifyReturn(make(chan amqp.Return, 4)),
			closes:  ch.NotifyClose(make(chan *amqp.Error, 1)),
		}
		if err := ch.Confirm(false); err != nil {
			_ = ch.Close()
			res <- opened{err: err}
			return
		}
		res <- opened{pc: pc}
	}()
	timer := time.NewTimer(p.s.ConfirmTimeout)
	defer timer.Stop()
	var cause error
	select {
	case r := <-res:
		if r.err != nil {
			return nil, fmt.Errorf("rabbitmq: opening a channel on %s: %w", p.s.addr, r.err)
		}
		return r.pc, nil
	case <-timer.C:
		cause = fmt.Errorf("%w: the broker at %s did not open a channel within %s; reconnecting", ErrConfirmTimeout, p.s.addr, p.s.ConfirmTimeout)
		p.dropConn(conn)
	case <-ctx.Done():
		cause = fmt.Errorf("rabbitmq: opening a channel on %s: %w", p.s.addr, context.Cause(ctx))
	}
	// Close the channel if it opens after all.
	p.closing.Add(1)
	go func() {
		defer p.closing.Done()
		if r := <-res; r.pc != nil {
			_ = r.pc.ch.Close()
		}
	}()
	return nil, cause
}

// release gives pc back: to the idle channels when reusable, else it is
// closed.
func (p *Publisher) release(pc *pubChannel, reusable bool) {
	p.mu.Lock()
	if reusable && !p.closed && pc.conn == p.conn && !pc.ch.IsClosed() {
		p.idle = append(p.idle, pc)
	} else {
		p.discard(pc)
	}
	p.mu.Unlock()
	<-p.slots
}

// discard closes pc in the background: a channel whose publish timed out
// may still get a late confirm or return, and must not serve another
// publish. Called with p.mu held.
func (p *Publisher) discard(pc *pubChannel) {
	if pc.ch.IsClosed() {
		return
	}
	p.closing.Add(1)
	go func() {
		defer p.closing.Done()
		_ = pc.ch.Close()
	}()
}

// dropConn closes conn, if it is still the current connection, so that
// the next publish dials a new one.
func (p *Publisher) dropConn(conn *amqp.Connection) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == conn {
		p.conn, p.idle = nil, nil
		p.closeConnAsync(conn)
	}
}

// closeConnAsync closes conn in the background, waiting at most
// DialTimeout for the broker's reply. Called with p.mu held.
func (p *Publisher) closeConnAsync(conn *amqp.Connection) {
	p.closing.Add(1)
	go func() {
		defer p.closing.Done()
		_ = conn.CloseDeadline(time.Now().Add(p.s.DialTimeout))
	}()
}
