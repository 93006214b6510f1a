package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Size is a request size in bytes: the line with its '\n' on a stream
// transport, the datagram on a datagram transport. It is the one size
// grammar of sockbench: `load -s`, a profile's sizes and the report's
// labels all read and write it.
type Size int

// MaxSize bounds a Size: 1 GiB, far past any line or datagram a server
// takes, and small enough that no unit multiplies it into an overflow.
const MaxSize Size = 1 << 30

// ErrBadSize is what every *SizeError matches with errors.Is.
var ErrBadSize = errors.New("protocol: bad size")

// SizeError is the error of ParseSize and ParseSizeRange: the input and
// what is wrong with it, so a command can name its flag instead.
type SizeError struct {
	Input   string
	Problem string // "want a positive byte count such as 64, 4KiB or 1MiB, at most 1GiB"
}

func (e *SizeError) Error() string { return fmt.Sprintf("%v %q: %s", ErrBadSize, e.Input, e.Problem) }

// Is makes errors.Is(err, ErrBadSize) true.
func (e *SizeError) Is(target error) bool { return target == ErrBadSize }

// sizeUnits are the units a size may carry, longest first so "KiB" is
// not read as "B". Units are binary and case-insensitive: 4k, 4K, 4KiB
// and 4kib are all 4096. (KB is refused: it could mean 1000.)
var sizeUnits = []struct {
	suffix string
	mult   Size
}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"k", 1 << 10}, {"m", 1 << 20}, {"b", 1}}

// ParseSize reads a byte count: a positive whole number with an optional
// binary unit (B; K or KiB, 1024; M or MiB, 1024²), such as 64, 512B,
// 4k, 4KiB or 1MiB, at most MaxSize. Space between number and unit is
// allowed.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := Size(1)
	low := strings.ToLower(t)
	for _, u := range sizeUnits {
		if strings.HasSuffix(low, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > int64(MaxSize/mult) {
		return 0, &SizeError{s, "want a positive byte count such as 64, 4KiB or 1MiB, at most 1GiB"}
	}
	return Size(n) * mult, nil
}

// ParseSizeRange reads "SIZE" (a fixed size) or "MIN:MAX" (sizes drawn
// from MIN to MAX), each side as ParseSize reads it: 64, 16:4KiB.
func ParseSizeRange(s string) (lo, hi Size, err error) {
	a, b, isRange := strings.Cut(s, ":")
	bad := func() (Size, Size, error) {
		return 0, 0, &SizeError{s, "want a byte count such as 64 or 4KiB (at most 1GiB), or MIN:MAX such as 16:4KiB"}
	}
	if lo, err = ParseSize(a); err != nil {
		return bad()
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = ParseSize(b); err != nil {
		return bad()
	}
	if hi < lo {
		return 0, 0, &SizeError{s, "MIN is larger than MAX"}
	}
	return lo, hi, nil
}

// String writes the size in the largest binary unit that divides it:
// 64B, 4KiB, 1MiB. ParseSize reads it back.
func (s Size) String() string {
	switch {
	case s >= 1<<20 && s%(1<<20) == 0:
		return strconv.Itoa(int(s>>20)) + "MiB"
	case s >= 1<<10 && s%(1<<10) == 0:
		return strconv.Itoa(int(s>>10)) + "KiB"
	}
	return strconv.Itoa(int(s)) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseSize.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
