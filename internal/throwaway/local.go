package throwaway

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/txoutbox/internal/pglocal"
)

// LocalSource returns the source that runs a cluster from this machine's
// PostgreSQL server binaries, which finder finds (the zero Finder searches
// the usual places): fast (fsync off), on a free loopback port, in a
// temporary directory that Close removes. See internal/pglocal.
func LocalSource(finder pglocal.Finder) Source { return localSource{finder: finder} }

type localSource struct {
	finder pglocal.Finder
}

func (localSource) Kind() Kind { return Local }

func (s localSource) Probe(ctx context.Context) error {
	_, err := s.finder.BinDir(ctx)
	return err
}

func (s localSource) Start(ctx context.Context, logf Logf) (*Server, error) {
	bin, err := s.finder.BinDir(ctx)
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	c, err := pglocal.Start(ctx, pglocal.Options{BinDir: bin})
	if err != nil {
		return nil, err
	}
	desc := fmt.Sprintf("a local cluster from %s in %s", bin, c.Dir())
	logf("throwaway: started %s at 127.0.0.1:%d in %v", desc, c.Port(), time.Since(begin).Round(time.Millisecond))
	return NewServer(c.URL(), Local, desc, func(context.Context) error { return c.Close() }), nil
}
