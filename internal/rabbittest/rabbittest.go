// Package rabbittest finds a RabbitMQ broker for tests, the way
// outbox/outboxtest finds PostgreSQL, and gives each test its own
// exchange and queues on it:
//
//  1. the broker at TXOUTBOX_TEST_RABBITMQ_URL, when set (an AMQP URI whose
//     user may declare and delete exchanges and queues on its vhost);
//  2. else the broker at amqp://guest:guest@127.0.0.1:5672/, when it
//     answers (development machines and CI run one);
//  3. else a container through testcontainers-go, when a Docker engine
//     answers (image TXOUTBOX_TEST_RABBITMQ_IMAGE, default DefaultImage),
//     started once per test binary and stopped by WithCleanup;
//  4. else the test fails with a message that says what to set or install.
//
// The broker is chosen once per test binary; every test logs which
// ("rabbittest: broker ..."). It also has a TCP proxy (Proxy) that stalls
// or cuts the connections through it, for fault tests.
package rabbittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// The environment variables that choose the broker.
const (
	EnvURL   = "TXOUTBOX_TEST_RABBITMQ_URL"
	EnvImage = "TXOUTBOX_TEST_RABBITMQ_IMAGE"
)

// LocalURL is the broker tried when EnvURL is not set.
const LocalURL = "amqp://guest:guest@127.0.0.1:5672/"

// DefaultImage is the container image used when EnvImage is not set: the
// official RabbitMQ image.
const DefaultImage = "rabbitmq:4"

// probeTimeout bounds asking a broker whether it answers.
const probeTimeout = 3 * time.Second

// broker is the process's broker, found once.
type broker struct {
	url    string
	source string
	stop   func(context.Context) error // a container's, else nil
	err    error
}

var (
	found   broker
	findOne sync.Once
)

// URL returns the AMQP URI of the test broker, finding it on first use,
// and logs which broker it is. It fails t when there is none.
func URL(t testing.TB) string {
	t.Helper()
	findOne.Do(func() { found = find(os.Getenv) })
	if found.err != nil {
		t.Fatal(found.err)
	}
	t.Logf("rabbittest: broker %s", found.source)
	return found.url
}

func find(getenv func(string) string) broker {
	if u := strings.TrimSpace(getenv(EnvURL)); u != "" {
		if err := probe(u); err != nil {
			return broker{err: fmt.Errorf("rabbittest: %s is set, but that broker does not answer: %v", EnvURL, err)}
		}
		return broker{url: u, source: fmt.Sprintf("from %s (%s)", EnvURL, hostOf(u))}
	}
	localErr := probe(LocalURL)
	if localErr == nil {
		return broker{url: LocalURL, source: "at 127.0.0.1:5672 (guest)"}
	}
	image := strings.TrimSpace(getenv(EnvImage))
	if image == "" {
		image = DefaultImage
	}
	b, ctrErr := startContainer(image)
	if ctrErr == nil {
		return b
	}
	return broker{err: fmt.Errorf("rabbittest: no RabbitMQ broker to test against; do one of these:\n"+
		"  - set %s to an AMQP URI whose user may declare and delete exchanges and queues, for example %s='amqp://guest:guest@127.0.0.1:5672/'\n"+
		"  - run RabbitMQ on 127.0.0.1:5672 with the guest user (Debian/Ubuntu: apt-get install rabbitmq-server; macOS: brew install rabbitmq)\n"+
		"  - start a Docker engine: a %s container is then started per test binary (%s names another image)\n"+
		"tried: 127.0.0.1:5672: %v; container: %v", EnvURL, EnvURL, image, EnvImage, localErr, ctrErr)}
}

// probe connects to u and closes the connection.
func probe(u string) error {
	conn, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(probeTimeout)})
	if err != nil {
		return err
	}
	return conn.CloseDeadline(time.Now().Add(probeTimeout))
}

// hostOf returns the host:port of an AMQP URI, without its credentials.
func hostOf(u string) string {
	uri, err := amqp.ParseURI(u)
	if err != nil {
		return "an unparsable URI"
	}
	return fmt.Sprintf("%s:%d", uri.Host, uri.Port)
}

// startContainer runs image and waits until its AMQP port answers.
func startContainer(image string) (b broker, err error) {
	defer func() {
		if r := recover(); r != nil { // testcontainers-go panics on some broken Docker setups
			err = fmt.Errorf("testcontainers-go: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithExposedPorts("5672/tcp"),
		testcontainers.WithWaitStrategy(wait.ForListeningPort("5672/tcp").WithStartupTimeout(3*time.Minute)),
	)
	stop := func(ctx context.Context) error {
		if ctr == nil {
			return nil
		}
		return testcontainers.TerminateContainer(ctr, testcontainers.StopContext(ctx))
	}
	if err != nil {
		_ = stop(context.Background())
		return broker{}, fmt.Errorf("start container %s: %w", image, err)
	}
	endpoint, err := ctr.PortEndpoint(ctx, "5672/tcp", "")
	if err != nil {
		_ = stop(context.Background())
		return broker{}, fmt.Errorf("container %s: port: %w", image, err)
	}
	u := "amqp://guest:guest@" + endpoint + "/"
	// The port listens a moment before the broker accepts logins.
	for err = probe(u); err != nil && ctx.Err() == nil; err = probe(u) {
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		_ = stop(context.Background())
		return broker{}, fmt.Errorf("container %s: the broker never accepted a connection: %w", image, err)
	}
	return broker{url: u, source: fmt.Sprintf("in a %s container (%.12s) at %s", image, ctr.GetContainerID(), endpoint), stop: stop}, nil
}

// TestingM is what WithCleanup wraps: a *testing.M, or another wrapper.
type TestingM interface{ Run() int }

// WithCleanup returns m with a Run that runs the tests and then stops the
// container URL started, if any. Use it in TestMain, around (or inside)
// outboxtest.WithCleanup.
func WithCleanup(m TestingM) TestingM { return cleanupM{m} }

type cleanupM struct{ m TestingM }

func (c cleanupM) Run() int {
	code := c.m.Run()
	if found.stop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := found.stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "rabbittest: stopping the container:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Name returns a name for a test's exchange or queue: the test's name,
// shortened, and random hex, so that parallel tests and repeated runs
// never share one.
func Name(t testing.TB, what string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '.'
	}, t.Name())
	if len(n) > 150 {
		n = n[len(n)-150:]
	}
	return fmt.Sprintf("txoutbox.test.%s.%s.%s", n, what, hex.EncodeToString(b[:]))
}
