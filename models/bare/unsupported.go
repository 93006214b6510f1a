//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package bare

import (
	"context"
	"fmt"
	"runtime"

	"github.com/sockbench/sockbench/models"
)

// DefaultPoolSize is the --block pool's default size where the model runs.
const DefaultPoolSize = 1024

// server stands in for the model on systems with neither epoll nor
// kqueue: it builds, and Start says clearly that it cannot serve here.
type server struct{ cfg models.Config }

// New builds a server whose Start returns models.ErrUnsupportedNet.
func New(cfg models.Config) (models.Server, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	return &server{cfg: cfg}, nil
}

func (s *server) Start() error {
	return fmt.Errorf("%w %s: the %s model needs epoll or kqueue, which %s lacks", models.ErrUnsupportedNet, s.cfg.Net, Name, runtime.GOOS)
}

func (s *server) Addr() string                   { return "" }
func (s *server) Shutdown(context.Context) error { return nil }
func (s *server) Stats() models.Stats            { return models.Stats{} }
