package prefork

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// admission enforces Config.MaxConns across every worker of a pool.
//
// Each worker process runs its own accept loop, so a per-process limit
// (MaxConns/Workers each) would reject a connection while other workers
// have room, and the kernel does not spread connections evenly. Instead
// the workers share a small memory-mapped file holding one int32 counter
// per worker slot: a worker admits a connection by first adding one to its
// own cell and then summing all cells; over the limit, it takes its one
// back and rejects. Two workers racing for the last place may both reject
// (never both admit), so the limit is never exceeded. When a worker dies
// its connections die with it; the parent zeroes its cell before the
// replacement starts, so a crash leaks no places.
//
// The same memory holds, after the connection counters, one int64 per
// slot with the bytes that worker holds for its clients
// (Config.MaxBuffered, models.SharedBuffers): a worker adds to its own
// cell, sums them all to see whether the pool is past the bound, and
// closes its own connection holding the most. The parent zeroes a dead
// worker's cell with the other.
//
// The file is unlinked as soon as it is created: only the inherited
// descriptors keep it alive, and nothing is left on disk.
type admission struct {
	mem   []byte
	max   int32
	slots int
}

// heldOffset is where the held-bytes cells start: after the connection
// counters, 8-byte aligned for 64-bit atomics (on 32-bit ARM too).
func heldOffset(slots int) int { return (4*slots + 7) &^ 7 }

// admissionSize is the bytes the shared memory needs for slots workers.
func admissionSize(slots int) int { return heldOffset(slots) + 8*slots }

// newAdmission creates the shared counters for slots workers and returns
// the file to hand to them.
func newAdmission(slots, max int) (*admission, *os.File, error) {
	f, err := os.CreateTemp("", "sockbench-prefork-*")
	if err != nil {
		return nil, nil, fmt.Errorf("prefork: shared max-conns counters: %w", err)
	}
	os.Remove(f.Name())
	size := (admissionSize(slots) + os.Getpagesize() - 1) / os.Getpagesize() * os.Getpagesize()
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("prefork: shared max-conns counters: %w", err)
	}
	a, err := mapAdmission(f, slots, max)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return a, f, nil
}

// mapAdmission maps the shared counters from f (in a worker, the inherited
// descriptor).
func mapAdmission(f *os.File, slots, max int) (*admission, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("prefork: shared max-conns counters: %w", err)
	}
	if st.Size() < int64(admissionSize(slots)) {
		return nil, fmt.Errorf("prefork: shared max-conns counters: file is %d bytes, need %d", st.Size(), admissionSize(slots))
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("prefork: mmap shared max-conns counters: %w", err)
	}
	return &admission{mem: mem, max: int32(max), slots: slots}, nil
}

// cell is slot's counter. The mapping is page aligned, so every cell is
// naturally aligned for atomic access, on 32-bit ARM too.
func (a *admission) cell(slot int) *int32 {
	return (*int32)(unsafe.Pointer(&a.mem[4*slot]))
}

// admit takes a place for slot, or reports false when MaxConns are open.
func (a *admission) admit(slot int) bool {
	atomic.AddInt32(a.cell(slot), 1)
	var sum int32
	for i := range a.slots {
		sum += atomic.LoadInt32(a.cell(i))
	}
	if sum > a.max {
		atomic.AddInt32(a.cell(slot), -1)
		return false
	}
	return true
}

// release gives slot's place back.
func (a *admission) release(slot int) { atomic.AddInt32(a.cell(slot), -1) }

// held is the held-bytes cells, one per slot.
func (a *admission) held() []atomic.Int64 {
	return unsafe.Slice((*atomic.Int64)(unsafe.Pointer(&a.mem[heldOffset(a.slots)])), a.slots)
}

// reset zeroes a dead worker's cells (parent only).
func (a *admission) reset(slot int) {
	atomic.StoreInt32(a.cell(slot), 0)
	a.held()[slot].Store(0)
}

// close unmaps the counters.
func (a *admission) close() {
	if a != nil && a.mem != nil {
		syscall.Munmap(a.mem)
		a.mem = nil
	}
}

// admitListener applies the shared limit in a worker: connections past it
// are closed at once and counted as Rejected, as the threaded model does
// with its own limit (which the worker turns off).
type admitListener struct {
	net.Listener
	adm      *admission
	slot     int
	rejected *atomic.Uint64
}

func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.adm.admit(l.slot) {
			return &admittedConn{Conn: c, release: func() { l.adm.release(l.slot) }}, nil
		}
		l.rejected.Add(1)
		c.Close()
	}
}

// admittedConn gives its place back on the first Close. It forwards
// CloseWrite, which the threaded model's lingering close relies on.
type admittedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *admittedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.LocalAddr().Network(), Err: syscall.EINVAL}
}
