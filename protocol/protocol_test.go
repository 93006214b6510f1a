package protocol

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestUpperOnlyASCIILetters(t *testing.T) {
	in := make([]byte, 256)
	for i := range in {
		in[i] = byte(i)
	}
	out := Upper.AppendReply(nil, in)
	for i, c := range out {
		want := byte(i)
		if want >= 'a' && want <= 'z' {
			want -= 32
		}
		if c != want {
			t.Fatalf("upper(0x%02x) = 0x%02x, want 0x%02x", i, c, want)
		}
	}
	if got := Echo.AppendReply([]byte("x"), in); !bytes.Equal(got[1:], in) || got[0] != 'x' {
		t.Fatal("echo changed its input or lost the prefix")
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range Modes {
		got, err := ParseMode(m.String())
		if err != nil || got != m {
			t.Fatalf("ParseMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseMode("shout"); !errors.Is(err, ErrUnknownMode) {
		t.Fatalf("ParseMode(shout) err = %v, want ErrUnknownMode", err)
	}
}

func TestLineLen(t *testing.T) {
	cases := []struct {
		buf     string
		max     int
		n       int
		tooLong bool
	}{
		{"", 8, 0, false},
		{"\n", 8, 1, false},
		{"abc", 8, 0, false},
		{"abc\ndef\n", 8, 4, false},
		{"1234567\n", 8, 8, false}, // exactly max, '\n' included
		{"12345678", 8, 0, true},   // max bytes and no newline: never acceptable
		{"12345678\n", 8, 0, true}, // content of max bytes: too long
		{"1234567\nxxxxxx", 8, 8, false},
	}
	for _, c := range cases {
		n, err := LineLen([]byte(c.buf), c.max)
		if n != c.n || (err != nil) != c.tooLong {
			t.Errorf("LineLen(%q, %d) = %d, %v; want %d, tooLong=%v", c.buf, c.max, n, err, c.n, c.tooLong)
		}
	}
}

func TestLineReaderOneByteAtATime(t *testing.T) {
	in := "hello\n\nworld\n"
	lr := NewLineReader(iotest.OneByteReader(strings.NewReader(in)), 16)
	var got []string
	for {
		l, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(l))
	}
	if strings.Join(got, "") != in || len(got) != 3 {
		t.Fatalf("got %q", got)
	}
}

func TestLineReaderPartialAtEOF(t *testing.T) {
	lr := NewLineReader(strings.NewReader("ok\npart"), 16)
	if l, err := lr.Next(); err != nil || string(l) != "ok\n" {
		t.Fatalf("first = %q, %v", l, err)
	}
	if _, err := lr.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("partial line err = %v, want ErrUnexpectedEOF", err)
	}
}

func TestLineReaderBoundsMemory(t *testing.T) {
	const max = 100
	lr := NewLineReader(strings.NewReader(strings.Repeat("x", max-1)+"\n"+strings.Repeat("y", 10*max)), max)
	l, err := lr.Next()
	if err != nil || len(l) != max {
		t.Fatalf("line of exactly max: len %d, %v", len(l), err)
	}
	if _, err := lr.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("over-long line err = %v", err)
	}
	if lr.Cap() > max {
		t.Fatalf("buffer grew to %d, past max-line %d", lr.Cap(), max)
	}
}

func TestBurnTakesAboutD(t *testing.T) {
	start := time.Now()
	Burn(5 * time.Millisecond)
	if el := time.Since(start); el < 5*time.Millisecond {
		t.Fatalf("Burn(5ms) returned after %v", el)
	}
}

// FuzzLineReader checks framing never buffers past the limit and never
// splits or merges lines: the lines it returns, concatenated, are exactly
// the input's complete lines, each ending in its only '\n'.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), 4, 3)
	f.Add([]byte(strings.Repeat("z", 70)+"\n"), 64, 7)
	f.Add([]byte("\n\n\n"), 1, 1)
	f.Add([]byte("x\ny\n"), 2, math.MinInt)
	f.Fuzz(func(t *testing.T, in []byte, maxLine, chunk int) {
		if maxLine <= 0 || maxLine > 1<<12 {
			maxLine = 1 + (maxLine&0xfff+0x1000)%0x1000
		}
		// Reads of 1 to 17 bytes, or up to 4 KiB: lines are cut anywhere.
		// (Not -chunk: it overflows for the most negative int.)
		if chunk <= 0 || chunk > 1<<12 {
			chunk = 1 + int(uint(chunk)%17)
		}
		r := &chunkReader{b: in, n: chunk}
		lr := NewLineReader(r, maxLine)
		var out []byte
		for {
			l, err := lr.Next()
			if lr.Cap() > maxLine {
				t.Fatalf("buffer %d past max-line %d", lr.Cap(), maxLine)
			}
			if err != nil {
				// Whatever stopped us, the lines so far are a prefix of the input.
				if !bytes.HasPrefix(in, out) {
					t.Fatalf("output is not a prefix of input")
				}
				rest := in[len(out):]
				switch {
				case err == io.EOF:
					if len(rest) != 0 {
						t.Fatalf("EOF with %d bytes unread", len(rest))
					}
				case err == io.ErrUnexpectedEOF:
					if len(rest) == 0 || bytes.IndexByte(rest, '\n') >= 0 {
						t.Fatalf("unexpected EOF with rest %q", rest)
					}
				case errors.Is(err, ErrLineTooLong):
					i := bytes.IndexByte(rest, '\n')
					if i >= 0 && i+1 <= maxLine {
						t.Fatalf("line of %d bytes rejected with max %d", i+1, maxLine)
					}
				default:
					t.Fatal(err)
				}
				return
			}
			if len(l) == 0 || len(l) > maxLine || bytes.IndexByte(l, '\n') != len(l)-1 {
				t.Fatalf("bad line %q (max %d)", l, maxLine)
			}
			// The reply of each mode is one line too: as long as the
			// request, its only '\n' last, and echo is the request itself.
			for _, m := range Modes {
				r := m.AppendReply(nil, l)
				if len(r) != len(l) || bytes.IndexByte(r, '\n') != len(r)-1 || (m == Echo && !bytes.Equal(r, l)) {
					t.Fatalf("%v reply %q to line %q", m, r, l)
				}
			}
			out = append(out, l...)
		}
	})
}

type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := c.n
	if n > len(p) {
		n = len(p)
	}
	if n > len(c.b) {
		n = len(c.b)
	}
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func BenchmarkUpper(b *testing.B) {
	buf := make([]byte, 1024)
	rand.New(rand.NewSource(1)).Read(buf)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		UpperInPlace(buf)
	}
}
