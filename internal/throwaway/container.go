package throwaway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
)

// DefaultImage is the container image used when none is given: the
// official PostgreSQL image, a current major version.
const DefaultImage = "postgres:17"

const (
	// probeTimeout bounds asking whether a Docker engine answers.
	probeTimeout = 5 * time.Second
	// stopTimeout is how long a container gets to stop before it is
	// killed; its data is thrown away anyway.
	stopTimeout = time.Second
)

// OwnerLabel is a label on every container this package starts. Its value
// names the process that started the container, as host/boot-id/pid, so that
// a later Start can remove the containers of processes that died without
// closing them.
const OwnerLabel = "org.txoutbox.throwaway.owner"

// ErrImageUnavailable is returned (wrapped) by a container source's Start
// when the image is neither present nor pullable.
var ErrImageUnavailable = errors.New("image is not present and cannot be pulled")

// ContainerSource returns the source that runs image ("" means
// [DefaultImage]) through testcontainers-go's postgres module, when a
// Docker engine answers. The image must behave like the official postgres
// image: POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB, port 5432, a
// command of postgres and -c settings, and "database system is ready to
// accept connections" logged twice (after the init pass and after the real
// start).
//
// The container runs with fsync and full_page_writes off,
// max_connections=200, and its data directory (the image's PGDATA) on a
// tmpfs. If the image is not present it is pulled once; a
// pull that fails fails the start (testcontainers-go itself would retry
// for as long as the context allows). Containers carry a label naming the
// process that started them: when that process dies without closing its
// server, the next start from this machine removes the container (with
// testcontainers-go's Ryuk enabled, Ryuk removes it sooner).
func ContainerSource(image string) Source {
	if image == "" {
		image = DefaultImage
	}
	return containerSource{image: image}
}

type containerSource struct {
	image string
}

func (containerSource) Kind() Kind { return Container }

// Probe asks the Docker engine that testcontainers-go would use (from
// DOCKER_HOST, ~/.testcontainers.properties, the Docker context or the
// usual sockets) for a ping.
func (s containerSource) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cli, err := dockerClient(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("no Docker engine answers: %w", err)
	}
	return nil
}

// dockerClient connects to the engine testcontainers-go would use.
func dockerClient(ctx context.Context) (_ *testcontainers.DockerClient, err error) {
	// testcontainers-go panics on some broken configurations.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("no Docker engine answers: testcontainers-go: %v", r)
		}
	}()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("no Docker engine answers (testcontainers-go tried DOCKER_HOST, "+
			"~/.testcontainers.properties, the Docker context and the usual sockets): %w", err)
	}
	return cli, nil
}

func (s containerSource) Start(ctx context.Context, logf Logf) (_ *Server, err error) {
	begin := time.Now()
	cli, err := dockerClient(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	removeAbandoned(ctx, cli, logf)
	pgdata, err := ensureImage(ctx, cli, s.image, logf)
	if err != nil {
		return nil, err
	}
	// testcontainers-go logs to logf during Start only: at termination
	// the test that started the server may have finished.
	tcLog := &switchLogger{logf: logf}
	defer tcLog.set(nil)
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(tcLog), // first, so no option logs elsewhere
		testcontainers.WithCmdArgs("-c", "full_page_writes=off", "-c", "max_connections=200"),
		testcontainers.WithLabels(map[string]string{OwnerLabel: ownerID()}),
		postgres.BasicWaitStrategies(),
	}
	if pgdata != "" {
		// The data directory in memory: creating a database is mostly
		// file system work, several times faster on tmpfs.
		opts = append(opts, testcontainers.WithTmpfs(map[string]string{pgdata: "rw"}))
	}

	ctr, err := postgres.Run(ctx, s.image, opts...)
	terminate := func(ctx context.Context) error {
		if ctr == nil {
			return nil
		}
		// TerminateContainer counts a container that is gone already, or
		// being removed, as removed.
		if err := testcontainers.TerminateContainer(ctr, testcontainers.StopContext(ctx), testcontainers.StopTimeout(stopTimeout)); err != nil {
			return fmt.Errorf("throwaway: remove container %s: %w", ctr.GetContainerID(), err)
		}
		return nil
	}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = errors.Join(err, terminate(cctx))
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("start container %s: %w", s.image, err)
	}
	url, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		return nil, fmt.Errorf("container %s: connection string: %w", s.image, err)
	}
	endpoint, err := ctr.PortEndpoint(ctx, "5432/tcp", "")
	if err != nil {
		return nil, fmt.Errorf("container %s: port: %w", s.image, err)
	}
	desc := fmt.Sprintf("a %s container (%.12s)", s.image, ctr.GetContainerID())
	logf("throwaway: started %s at %s in %v", desc, endpoint, time.Since(begin).Round(time.Millisecond))
	return NewServer(url, Container, desc, terminate), nil
}

// ensureImage pulls image once if the engine does not have it, so that an
// unreachable registry fails the start at once. It returns the image's
// PGDATA, "" if unknown.
func ensureImage(ctx context.Context, cli *testcontainers.DockerClient, image string, logf Logf) (pgdata string, err error) {
	// With a registry prefix configured, testcontainers-go pulls a
	// different name than image: leave pulling to it.
	if os.Getenv("TESTCONTAINERS_HUB_IMAGE_NAME_PREFIX") != "" {
		return "", nil
	}
	res, err := cli.ImageInspect(ctx, image)
	if err != nil && !errdefs.IsNotFound(err) {
		return "", fmt.Errorf("inspect image %s: %w", image, err)
	}
	if err != nil {
		logf("throwaway: pulling %s", image)
		begin := time.Now()
		resp, err := cli.ImagePull(ctx, image, client.ImagePullOptions{})
		if err != nil {
			return "", fmt.Errorf("%s: %w: %w", image, ErrImageUnavailable, err)
		}
		defer resp.Close()
		if err := resp.Wait(ctx); err != nil {
			return "", fmt.Errorf("%s: %w: %w", image, ErrImageUnavailable, err)
		}
		logf("throwaway: pulled %s in %v", image, time.Since(begin).Round(time.Millisecond))
		if res, err = cli.ImageInspect(ctx, image); err != nil {
			return "", fmt.Errorf("inspect image %s: %w", image, err)
		}
	}
	if res.Config != nil {
		for _, kv := range res.Config.Env {
			if v, ok := strings.CutPrefix(kv, "PGDATA="); ok {
				return v, nil
			}
		}
	}
	return "", nil
}

// removeAbandoned removes the containers started by processes of this
// machine that have died. Failures are only logged: they do not stop a
// start.
func removeAbandoned(ctx context.Context, cli *testcontainers.DockerClient, logf Logf) {
	host, boot, _ := ownerParts(ownerID())
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", OwnerLabel),
	})
	if err != nil {
		logf("throwaway: list containers: %v", err)
		return
	}
	for _, c := range res.Items {
		h, b, pid := ownerParts(c.Labels[OwnerLabel])
		if h != host || b != boot || pid <= 0 || processAlive(pid) {
			continue
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			logf("throwaway: remove abandoned container %.12s: %v", c.ID, err)
			continue
		}
		logf("throwaway: removed container %.12s, abandoned by process %d", c.ID, pid)
	}
}

// ownerID names this process for the owner label: host name, boot id
// (empty where unknown) and pid.
func ownerID() string {
	host, _ := os.Hostname()
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return host + "/" + strings.TrimSpace(string(boot)) + "/" + strconv.Itoa(os.Getpid())
}

// ownerParts splits an owner label; pid is 0 if it is malformed.
func ownerParts(id string) (host, boot string, pid int) {
	i := strings.LastIndexByte(id, '/')
	if i < 0 {
		return "", "", 0
	}
	pid, err := strconv.Atoi(id[i+1:])
	if err != nil {
		pid = 0
	}
	host, boot, _ = strings.Cut(id[:i], "/")
	return host, boot, pid
}

// switchLogger hands testcontainers-go's log lines to a Logf that can be
// replaced, so that lines logged after Start (at termination) do not go to
// a test that has finished.
type switchLogger struct {
	mu   sync.Mutex
	logf Logf
}

var _ tclog.Logger = (*switchLogger)(nil)

func (l *switchLogger) set(logf Logf) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logf = logf
}

// Printf implements testcontainers-go's log.Logger.
func (l *switchLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logf != nil {
		l.logf("testcontainers: "+format, args...)
	}
}
