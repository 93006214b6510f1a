package loadgen

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// Purpose-built test servers. loadgen must not depend on the model packages,
// so its tests bring their own small servers that speak the wire protocol,
// each with one deliberate property: a delay, corruption, loss, or a
// process that can be paused.

// scaled stretches a wall-clock bound of a test by SOCKBENCH_TEST_SCALE
// (a number, e.g. 8 under qemu-user in make test-emulated); unset, bounds
// are as written.
func scaled(d time.Duration) time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv("SOCKBENCH_TEST_SCALE"), 64); err == nil && v > 1 {
		return time.Duration(float64(d) * v)
	}
	return d
}

// subprocessEnv makes the test binary run subprocessServer instead of the tests.
const subprocessEnv = "LOADGEN_TEST_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(subprocessEnv) != "" {
		os.Exit(subprocessServer())
	}
	os.Exit(m.Run())
}

// subprocessServer is an echo server on 127.0.0.1:0 in its own process; it
// prints its address and serves until SIGTERM or its stdin closes.
func subprocessServer() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv := &streamServer{ln: ln, mode: protocol.Echo, conns: map[net.Conn]bool{}}
	go srv.serve()
	fmt.Println(ln.Addr().String())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	go func() { // exit with the test, even if it dies without signalling
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		sig <- syscall.SIGTERM
	}()
	<-sig
	return 0
}

// startSubprocess runs subprocessServer in a child process and returns its
// address and the process (stopped and reaped in t.Cleanup).
func startSubprocess(t *testing.T) (string, *os.Process) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), subprocessEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("subprocess server: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process
}

// streamServer answers lines on a stream listener. delay, when set, holds
// each reply that long after its request was read (a timer, like a server
// with --block); corrupt, when set, may alter a reply before it is sent.
type streamServer struct {
	ln      net.Listener
	mode    protocol.Mode
	delay   time.Duration
	corrupt func(n int, reply []byte)

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// startStream starts a streamServer on network "tcp" or "unix" and returns
// its loadgen target. It is closed, and its goroutines awaited, in t.Cleanup.
func startStream(t testing.TB, network string, s *streamServer) string {
	t.Helper()
	var target string
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.ln, target = ln, "tcp://"+ln.Addr().String()
	case "unix":
		dir, err := os.MkdirTemp("", "sb")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		path := filepath.Join(dir, "s.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		s.ln, target = ln, "unix://"+path
	}
	s.conns = map[net.Conn]bool{}
	go s.serve()
	t.Cleanup(s.close)
	return target
}

func (s *streamServer) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.conns == nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *streamServer) handle(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	lr := protocol.NewLineReader(c, protocol.DefaultMaxLine)
	var reply []byte
	for n := 0; ; n++ {
		line, err := lr.Next()
		if err != nil {
			return
		}
		read := time.Now()
		reply = s.mode.AppendReply(reply[:0], line)
		if s.corrupt != nil {
			s.corrupt(n, reply)
		}
		if s.delay > 0 {
			holdUntil(read.Add(s.delay))
		}
		if _, err := c.Write(reply); err != nil {
			return
		}
	}
}

// dropAll closes the listener and every connection: the server "dies".
func (s *streamServer) dropAll() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
}

func (s *streamServer) close() {
	s.dropAll()
	s.wg.Wait()
}

// udpServer answers datagrams, dropping every dropEvery-th one it receives
// (0: none); when dup is set it sends every reply twice, when swap is set
// it holds every other reply back and sends it after the next one. From
// the garbleFrom-th datagram on (1: all; 0: none) it replies with the
// request's length of bytes that carry no sequence tag.
type udpServer struct {
	pc         net.PacketConn
	mode       protocol.Mode
	dropEvery  int
	dup        bool
	swap       bool
	garbleFrom int
	done       chan struct{}
}

func startUDP(t testing.TB, s *udpServer) string {
	t.Helper()
	return startDgram(t, "udp", s)
}

// startDgram starts s on "udp" or "unixgram" and returns its target.
func startDgram(t testing.TB, network string, s *udpServer) string {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unixgram" {
		dir, err := os.MkdirTemp("", "sb")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "s.sock")
	}
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s.pc, s.done = pc, make(chan struct{})
	go s.serve()
	t.Cleanup(func() { pc.Close(); <-s.done })
	return network + "://" + pc.LocalAddr().String()
}

func (s *udpServer) serve() {
	defer close(s.done)
	buf := make([]byte, protocol.MaxDatagram)
	// UDP uses the netip form, which does not allocate per datagram (the
	// zero-allocation benchmark counts the server's allocations too).
	read, write := s.pc.ReadFrom, s.pc.WriteTo
	if uc, ok := s.pc.(*net.UDPConn); ok {
		var from netip.AddrPort
		read = func(b []byte) (int, net.Addr, error) {
			var n int
			var err error
			n, from, err = uc.ReadFromUDPAddrPort(b)
			return n, nil, err
		}
		write = func(b []byte, _ net.Addr) (int, error) { return uc.WriteToUDPAddrPort(b, from) }
	}
	var held []byte
	for n := 1; ; n++ {
		k, from, err := read(buf)
		if err != nil {
			return
		}
		if s.dropEvery > 0 && n%s.dropEvery == 0 {
			continue
		}
		s.mode.Apply(buf[:k])
		if s.garbleFrom > 0 && n >= s.garbleFrom {
			for i := range buf[:k] {
				buf[i] = 'z' - byte((n+i)%26) // lower case: never a hex tag
			}
		}
		if s.swap {
			if held == nil {
				held = append(held[:0:0], buf[:k]...)
				continue
			}
			write(buf[:k], from)
			write(held, from)
			held = nil
			continue
		}
		write(buf[:k], from)
		if s.dup {
			write(buf[:k], from)
		}
	}
}
