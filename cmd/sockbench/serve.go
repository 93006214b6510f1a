package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/prefork"
	"github.com/sockbench/sockbench/protocol"
)

// Default addresses of `sockbench serve`.
const (
	defaultServePort = "7000"
	defaultSockName  = "sockbench.sock"
)

// serveFlags are the flags of `sockbench serve`.
type serveFlags struct {
	model        string
	network      string
	addr         string
	mode         protocol.Mode
	workers      int
	maxConns     int
	maxLine      int
	idleTimeout  time.Duration
	lineTimeout  time.Duration
	writeTimeout time.Duration
	maxBuffered  int64
	work         time.Duration
	block        time.Duration
	grace        time.Duration
	socketMode   string
	spawn        string
	logLevel     string
}

func newServeCmd() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one server model until SIGTERM or SIGINT",
		Long: `serve runs one server model on one transport. Once it accepts traffic it prints
exactly one line on stdout:

  ready <net> <addr> pid=<pid>

with the real port when :0 was asked for; everything else goes to stderr.
SIGTERM or SIGINT stops accepting, answers every request already read, and
exits 0 within --grace.

Requests are lines ending in '\n' on tcp and unix, one datagram each on udp
and unixgram; echo returns them unchanged, upper maps ASCII a-z to A-Z.`,
		Example: `  sockbench serve --net tcp --mode upper            # 127.0.0.1:7000
  sockbench serve --net udp --addr 127.0.0.1:0      # any free port
  sockbench serve --net unix --addr /tmp/sb.sock --block 1ms`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("serve takes no arguments, got %q (flags start with --; see 'sockbench serve --help')", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.model, "model", "threaded", "server model: "+strings.Join(models.Names(), ", "))
	fl.StringVar(&f.network, "net", "tcp", "transport: "+protocol.TransportsWanted)
	fl.StringVar(&f.addr, "addr", "", "host:port for tcp/udp (default 127.0.0.1:"+defaultServePort+"), socket path for unix (default "+filepath.Join(os.TempDir(), defaultSockName)+")")
	fl.Var(&f.mode, "mode", "what to do to each request: echo or upper")
	fl.IntVar(&f.workers, "workers", 0, "event loops, worker processes or UDP readers (0: one per CPU)")
	fl.IntVar(&f.maxConns, "max-conns", 0, fmt.Sprintf("most stream connections at once; more are closed at once (0: no limit; for prefork --spawn per-conn, %d processes)", prefork.DefaultPerConnLimit))
	fl.IntVar(&f.maxLine, "max-line", protocol.DefaultMaxLine, "longest request line in bytes, '\\n' included; a longer one closes its connection")
	fl.DurationVar(&f.idleTimeout, "idle-timeout", 0, "close a stream connection that sends nothing for this long (0: never)")
	fl.DurationVar(&f.lineTimeout, "line-timeout", models.DefaultLineTimeout, "close a stream connection whose request line is not complete this long after its first byte, as a client trickling bytes would (0: never)")
	fl.DurationVar(&f.writeTimeout, "write-timeout", models.DefaultWriteTimeout, "close a stream connection whose replies wait this long without the client taking any, as a client that never reads would (0: never)")
	fl.Int64Var(&f.maxBuffered, "max-buffered", 0, "most bytes the server holds for all its stream clients (partial lines, unanswered lines, unsent replies); past it the connection holding the most is closed (0: no bound; at least --max-line)")
	fl.DurationVar(&f.work, "work", 0, "CPU time to burn per request")
	fl.DurationVar(&f.block, "block", 0, "time to wait per request, as a blocking call would")
	fl.DurationVar(&f.grace, "grace", models.DefaultGrace, "longest graceful shutdown after SIGTERM/SIGINT")
	fl.StringVar(&f.socketMode, "socket-mode", "0600", "permission of a Unix socket file, in octal")
	fl.StringVar(&f.spawn, "spawn", "", "prefork only: pool (default) or per-conn (a process per connection)")
	fl.StringVar(&f.logLevel, "log-level", "info", "stderr log level: debug, info, warn or error")
	completeValues(cmd, "model", models.Names, cobra.ShellCompDirectiveNoFileComp)
	completeValues(cmd, "net", protocol.TransportNames, cobra.ShellCompDirectiveNoFileComp)
	completeValues(cmd, "mode", modeNames, cobra.ShellCompDirectiveNoFileComp)
	completeValues(cmd, "spawn", func() []string { return []string{"pool", "per-conn"} }, cobra.ShellCompDirectiveNoFileComp)
	completeValues(cmd, "log-level", func() []string { return []string{"debug", "info", "warn", "error"} }, cobra.ShellCompDirectiveNoFileComp)
	return cmd
}

// runServe checks the flags, builds the server and runs it.
func runServe(ctx context.Context, f *serveFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return usagef("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := serveConfig(f, log)
	if err != nil {
		return err
	}
	srv, err := models.New(f.model, cfg)
	if err != nil {
		// Every flag was checked above; what is left is a config the model
		// itself refuses.
		return usageError{err}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := models.Run(ctx, srv, cfg, os.Stdout); err != nil {
		return listenError(err, &cfg)
	}
	return nil
}

// serveConfig turns the flags into a Config, with one clear usage error for
// the first thing wrong. The rules a server needs live in Config.Normalize
// and models.CheckUnixPath; serve adds only what belongs to its flags
// (defaults of --addr, --grace 0, --socket-mode, --spawn) and says which
// flag a refused field came from.
func serveConfig(f *serveFlags, log *slog.Logger) (models.Config, error) {
	cfg := models.Config{Net: f.network, Mode: f.mode, Workers: f.workers, MaxConns: f.maxConns,
		MaxLine: f.maxLine, IdleTimeout: f.idleTimeout, LineTimeout: f.lineTimeout, WriteTimeout: f.writeTimeout, MaxBuffered: f.maxBuffered,
		Cost: protocol.Cost{Work: f.work, Block: f.block}, Grace: f.grace, Logger: log}
	if f.lineTimeout == 0 {
		cfg.LineTimeout = -1 // the flag's 0 is "never", as --idle-timeout's; Config's 0 is the default
	}
	if f.writeTimeout == 0 {
		cfg.WriteTimeout = -1
	}

	if !slices.Contains(models.Names(), f.model) {
		return cfg, usagef("unknown model %q (want one of: %s)", f.model, strings.Join(models.Names(), ", "))
	}
	tr, err := protocol.ParseTransport(f.network)
	switch {
	case f.network == "":
		return cfg, usagef("--net must not be empty (want %s)", protocol.TransportsWanted)
	case err != nil:
		return cfg, usagef("unknown --net %q (want %s)", f.network, protocol.TransportsWanted)
	}
	if f.writeTimeout < 0 {
		return cfg, usagef("--write-timeout must not be negative (got %v; 0 means never)", f.writeTimeout)
	}
	if f.lineTimeout < 0 {
		// Config reads a negative line timeout as "none"; the flag says that with 0.
		return cfg, usagef("--line-timeout must not be negative (got %v; 0 means never)", f.lineTimeout)
	}
	if f.grace == 0 {
		// Normalize would read 0 as "the default"; a flag given as 0 is a mistake.
		return cfg, usagef("--grace must be more than 0")
	}
	mode, err := strconv.ParseUint(f.socketMode, 8, 32)
	if err != nil || mode == 0 || mode > 0o777 {
		return cfg, usagef("--socket-mode %q: want octal permission bits from 0001 to 0777, such as 0600", f.socketMode)
	}
	cfg.SocketMode = os.FileMode(mode)
	if f.spawn != "" {
		if f.spawn != "pool" && f.spawn != "per-conn" {
			return cfg, usagef("--spawn %q: want pool or per-conn", f.spawn)
		}
		if f.model != "prefork" {
			return cfg, usagef("--spawn applies only to --model prefork (got --model %s)", f.model)
		}
		cfg.Extra = map[string]string{"spawn": f.spawn}
	}
	cfg.Addr = f.addr
	if tr.IsUnix() {
		if cfg.Addr == "" {
			cfg.Addr = filepath.Join(os.TempDir(), defaultSockName)
		}
	} else if cfg.Addr == "" {
		cfg.Addr = tr.Loopback(defaultServePort)
	}
	if err := cfg.Normalize(); err != nil {
		var ce *models.ConfigError
		if errors.As(err, &ce) {
			return cfg, usagef("--%s %s", ce.Field, ce.Problem)
		}
		return cfg, usageError{err}
	}
	if tr.IsUnix() {
		if err := models.CheckUnixPath(cfg.Addr, tr.Network()); err != nil {
			return cfg, usagef("--addr: %v", err)
		}
	} else if err := checkHostPort(cfg.Addr, tr, log); err != nil {
		return cfg, err
	}
	if !tr.IsStream() && (f.maxConns > 0 || f.idleTimeout > 0 || f.maxBuffered > 0) {
		log.Warn("--max-conns, --idle-timeout and --max-buffered apply to stream transports (tcp, unix) only; ignored", "net", f.network)
	}
	return cfg, nil
}

// checkHostPort validates a host:port address and warns when it is not a
// loopback address: the server would then be reachable from other machines.
func checkHostPort(addr string, tr protocol.Transport, log *slog.Logger) error {
	host, port, err := tr.SplitHostPort(addr)
	if err != nil {
		return usagef("--addr %v for --net %s; try %s or %s", err, tr, tr.Loopback(defaultServePort), tr.Loopback("0"))
	}
	var ips []net.IP
	switch {
	case host == "":
		log.Warn("binding to every interface: the server is reachable from other machines", "addr", addr)
		return nil
	case net.ParseIP(strings.Split(host, "%")[0]) != nil:
		ips = []net.IP{net.ParseIP(strings.Split(host, "%")[0])}
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		names, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil || len(names) == 0 {
			return usagef("--addr %q: cannot resolve host %q", addr, host)
		}
		for _, n := range names {
			ips = append(ips, net.ParseIP(n))
		}
	}
	local := localIPs()
	for _, ip := range ips {
		if ip == nil || ip.IsLoopback() || ip.IsUnspecified() || local == nil {
			continue
		}
		if !local[ip.String()] {
			return usagef("--addr %q: no interface on this machine has the address %s (try %s)", addr, ip, tr.Loopback(strconv.Itoa(int(port))))
		}
	}
	for _, ip := range ips {
		if ip != nil && !ip.IsLoopback() {
			log.Warn("binding to a non-loopback address: the server is reachable from other machines", "addr", addr)
			break
		}
	}
	return nil
}

// localIPs returns the addresses of this machine's interfaces, or nil when
// they cannot be listed (then the bind itself decides).
func localIPs() map[string]bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	ips := map[string]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ips[n.IP.String()] = true
		}
	}
	return ips
}

// listenError rewords the usual reasons a server cannot start as one line
// that says what to do.
func listenError(err error, cfg *models.Config) error {
	where := cfg.Net + " " + cfg.Addr
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("cannot listen on %s: address already in use (another server is running there; pick another --addr, or port 0 for any free port)", where)
	case errors.Is(err, syscall.EACCES) && cfg.IsUnix():
		return fmt.Errorf("cannot listen on %s: permission denied (the directory %s is not writable by this user)", where, filepath.Dir(cfg.Addr))
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("cannot listen on %s: permission denied (ports below 1024 need privileges; pick a higher port, or port 0 for any free one)", where)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("cannot listen on %s: no interface on this machine has that address", where)
	case errors.Is(err, models.ErrSocketInUse):
		return fmt.Errorf("cannot listen on %s: another server is listening on that socket", where)
	}
	return err
}
