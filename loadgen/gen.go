package loadgen

import (
	"github.com/sockbench/sockbench/protocol"
)

// content generates request contents and their expected replies.
//
// Subtleness ahead: the writer and the reader of a connection never pass
// request bytes to each other. Every request is a window into one shared,
// read-only pool of random bytes; its size and offset are a pure function of
// (seed, connection, sequence number). The reader recomputes them for the
// reply it expects and compares against the same window of the pool's
// expected form (upper-cased for `upper`). Generating a request therefore
// costs one hash and one copy, checking a reply one hash and one compare,
// and neither allocates.
type content struct {
	seed     uint64
	min      int
	span     uint64 // max - min + 1
	pool     []byte // request bytes; never contains '\n'
	expected []byte // pool as the server must return it
	other    []byte // pool as a server in the other mode would return it
}

// newContent builds the pool for sizes up to maxSize. The pool holds a mix
// of lower-case letters (so `upper` has work to do and a server that skips
// it is caught), other printable bytes, and binary bytes including >= 0x80,
// but never '\n'.
func newContent(seed uint64, mode protocol.Mode, minSize, maxSize int) *content {
	n := maxSize + 64<<10
	pool := make([]byte, n)
	s := seed ^ 0x5bd1e9955bd1e995
	for i := range pool {
		r := splitmix(&s)
		var b byte
		switch r & 3 {
		case 0, 1: // half lower-case letters
			b = 'a' + byte((r>>8)%26)
		case 2: // printable ASCII
			b = 0x20 + byte((r>>8)%95)
		default: // any byte
			b = byte(r >> 8)
		}
		if b == protocol.Newline {
			b = 'n'
		}
		pool[i] = b
	}
	upper := append([]byte(nil), pool...)
	protocol.UpperInPlace(upper)
	exp, other := pool, upper
	if mode == protocol.Upper {
		exp, other = upper, pool
	}
	return &content{
		seed:     seed,
		min:      minSize,
		span:     uint64(maxSize-minSize) + 1,
		pool:     pool,
		expected: exp,
		other:    other,
	}
}

// splitmix advances a SplitMix64 state and returns the next value.
func splitmix(s *uint64) uint64 {
	*s += 0x9e3779b97f4a7c15
	z := *s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// pick returns the size of request seq on connection conn, and the offset of
// its body in the pool for a body of size-reserved bytes.
func (c *content) pick(conn int, seq uint64, reserved int) (size, off int) {
	s := c.seed ^ uint64(conn)*0xd6e8feb86659fd93 ^ seq*0xa0761d6478bd642f
	h := splitmix(&s)
	size = c.min + int(h%c.span)
	body := size - reserved
	off = int((h >> 20) % uint64(len(c.pool)-body+1))
	return size, off
}

// line appends stream request seq of conn (body and '\n') to dst.
func (c *content) line(dst []byte, conn int, seq uint64) []byte {
	size, off := c.pick(conn, seq, 1)
	dst = append(dst, c.pool[off:off+size-1]...)
	return append(dst, protocol.Newline)
}

// checkLine reports whether reply is the correct reply to stream request seq
// of conn, and returns the expected length.
func (c *content) checkLine(reply []byte, conn int, seq uint64) (ok bool, size int) {
	size, off := c.pick(conn, seq, 1)
	if len(reply) != size || reply[size-1] != protocol.Newline {
		return false, size
	}
	return string(reply[:size-1]) == string(c.expected[off:off+size-1]), size
}

// expectedLine appends the expected reply to stream request seq (for examples).
func (c *content) expectedLine(dst []byte, conn int, seq uint64) []byte {
	size, off := c.pick(conn, seq, 1)
	dst = append(dst, c.expected[off:off+size-1]...)
	return append(dst, protocol.Newline)
}

// datagram appends datagram seq of conn to dst: a 16-digit upper-case hex
// sequence tag, which survives `upper`, then the body.
func (c *content) datagram(dst []byte, conn int, seq uint64) []byte {
	size, off := c.pick(conn, seq, tagLen)
	dst = appendTag(dst, seq)
	return append(dst, c.pool[off:off+size-tagLen]...)
}

// expectedDatagram appends the expected reply to datagram seq (for examples).
func (c *content) expectedDatagram(dst []byte, conn int, seq uint64) []byte {
	size, off := c.pick(conn, seq, tagLen)
	dst = appendTag(dst, seq)
	return append(dst, c.expected[off:off+size-tagLen]...)
}

// checkDatagram reports whether reply is the correct reply to datagram seq.
func (c *content) checkDatagram(reply []byte, conn int, seq uint64) bool {
	size, off := c.pick(conn, seq, tagLen)
	if len(reply) != size {
		return false
	}
	return string(reply[tagLen:]) == string(c.expected[off:off+size-tagLen])
}

const hexDigits = "0123456789ABCDEF"

// appendTag appends seq as 16 upper-case hex digits.
func appendTag(dst []byte, seq uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hexDigits[(seq>>uint(shift))&15])
	}
	return dst
}

// parseTag reads the sequence tag at the start of a datagram.
func parseTag(b []byte) (seq uint64, ok bool) {
	if len(b) < tagLen {
		return 0, false
	}
	for _, c := range b[:tagLen] {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		seq = seq<<4 | uint64(d)
	}
	return seq, true
}

// otherMode reports whether a wrong reply is exactly what a server in the
// other mode (echo for upper, upper for echo) would have sent: the most
// common mistake, worth naming in a warning.
func (c *content) otherMode(reply []byte, conn int, seq uint64, datagram bool) bool {
	reserved := 1
	if datagram {
		reserved = tagLen
	}
	size, off := c.pick(conn, seq, reserved)
	if len(reply) != size {
		return false
	}
	body := reply[:size-1]
	if datagram {
		body = reply[tagLen:]
	}
	return string(body) == string(c.other[off:off+size-reserved])
}
