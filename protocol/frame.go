package protocol

import (
	"bytes"
	"io"
)

// LineLen returns the length, '\n' included, of the first complete line in
// buf, or 0 when buf holds no complete line yet. When buf holds maxLine or
// more bytes without a '\n' among the first maxLine, it returns
// ErrLineTooLong: the line can never be accepted, and a server closes the
// connection instead of buffering more.
//
// A request line, '\n' included, may be at most maxLine bytes long; the
// longest accepted content is therefore maxLine-1 bytes.
func LineLen(buf []byte, maxLine int) (int, error) {
	limit := len(buf)
	if limit > maxLine {
		limit = maxLine
	}
	if i := bytes.IndexByte(buf[:limit], Newline); i >= 0 {
		return i + 1, nil
	}
	if len(buf) >= maxLine {
		return 0, ErrLineTooLong
	}
	return 0, nil
}

// LineReader reads '\n'-terminated lines from a stream while never holding
// more than maxLine bytes. Its buffer starts small and grows only as far as
// a long line needs, up to maxLine.
//
// The slice Next returns aliases the internal buffer and is valid only until
// the next call to Next.
type LineReader struct {
	r          io.Reader
	buf        []byte
	start, end int
	maxLine    int
	err        error
}

// initialBuf is the first buffer size; most request lines fit.
const initialBuf = 4 << 10

// NewLineReader returns a LineReader over r. maxLine <= 0 means DefaultMaxLine.
func NewLineReader(r io.Reader, maxLine int) *LineReader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	n := initialBuf
	if n > maxLine {
		n = maxLine
	}
	return &LineReader{r: r, buf: make([]byte, n), maxLine: maxLine}
}

// Reset points the reader at a new stream, keeping its buffer.
func (lr *LineReader) Reset(r io.Reader) {
	lr.r, lr.start, lr.end, lr.err = r, 0, 0, nil
}

// HasLine reports whether a complete line is already buffered, so the next
// Next will not read from the stream. Servers use it to decide when to flush
// batched replies.
func (lr *LineReader) HasLine() bool {
	n, err := LineLen(lr.buf[lr.start:lr.end], lr.maxLine)
	return n > 0 || err != nil
}

// Buffered returns how many bytes are held that Next has not returned yet:
// a partial line a client may still be sending.
func (lr *LineReader) Buffered() int { return lr.end - lr.start }

// Next returns the next line, '\n' included. At the end of the stream it
// returns io.EOF; if the stream ended inside a line it returns
// io.ErrUnexpectedEOF (the partial line is dropped: it was never a request).
// A line that does not fit in maxLine bytes returns ErrLineTooLong; the
// reader is then unusable.
func (lr *LineReader) Next() ([]byte, error) {
	for {
		n, err := LineLen(lr.buf[lr.start:lr.end], lr.maxLine)
		if err != nil {
			lr.err = err
			return nil, err
		}
		if n > 0 {
			line := lr.buf[lr.start : lr.start+n]
			lr.start += n
			if lr.start == lr.end {
				lr.start, lr.end = 0, 0
			}
			return line, nil
		}
		if lr.err != nil {
			if lr.err == io.EOF && lr.end > lr.start {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, lr.err
		}
		lr.fill()
	}
}

// fill makes room and reads once from the stream.
func (lr *LineReader) fill() {
	if lr.start > 0 {
		lr.end = copy(lr.buf, lr.buf[lr.start:lr.end])
		lr.start = 0
	}
	if lr.end == len(lr.buf) {
		// A partial line fills the buffer: grow, but never past maxLine
		// (LineLen reports ErrLineTooLong before we would need to).
		n := 2 * len(lr.buf)
		if n > lr.maxLine {
			n = lr.maxLine
		}
		nb := make([]byte, n)
		copy(nb, lr.buf[:lr.end])
		lr.buf = nb
	}
	n, err := lr.r.Read(lr.buf[lr.end:])
	lr.end += n
	if err != nil {
		lr.err = err
	}
}

// Cap returns the current buffer capacity: the memory held for this stream.
func (lr *LineReader) Cap() int { return cap(lr.buf) }
