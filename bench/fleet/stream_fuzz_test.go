package fleet

import (
	"bufio"
	"bytes"
	"io"
	"testing"
)

// FuzzReadControl feeds arbitrary client bytes to the control-frame reader
// of a subscriber: it must never panic and must end on any input.
func FuzzReadControl(f *testing.F) {
	f.Add([]byte{0x89, 0x80, 1, 2, 3, 4})                            // masked empty ping
	f.Add([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8})                // close 1000
	f.Add([]byte{0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0}) // huge data frame
	f.Add([]byte{0x09, 0x7e, 0x01, 0x00})                            // fragmented ping, too long
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &stream{bw: bufio.NewWriter(io.Discard), done: make(chan struct{})}
		s.readControl(bufio.NewReader(bytes.NewReader(in)))
		select {
		case <-s.done:
		default:
			t.Fatal("reader returned without finishing the stream")
		}
	})
}
