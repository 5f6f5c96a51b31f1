package wsconn

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestAppendFrameHeader checks the three length encodings against
// ws.WriteHeader's.
func TestAppendFrameHeader(t *testing.T) {
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(n)}); err != nil {
			t.Fatal(err)
		}
		if got := AppendFrameHeader(nil, ws.OpBinary, n); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("length %d: % x, want % x", n, got, want.Bytes())
		}
	}
}

// TestServe runs a stream against a real client: the frames arrive, a
// ping is answered while the stream waits, data from the client is
// ignored, and the client's close ends the stream.
func TestServe(t *testing.T) {
	server, client := net.Pipe()
	c := New(server, 4<<10)
	served := make(chan struct{})
	go func() {
		defer close(served)
		c.Serve(bufio.NewReader(server), func() {
			for _, f := range []string{"one", "two"} {
				if err := c.WriteFrame([]byte(f), false); err != nil {
					t.Error(err)
				}
			}
			if err := c.Flush(); err != nil {
				t.Error(err)
			}
			<-c.Done()
		})
	}()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []string{"one", "two"} {
		got, err := wsutil.ReadServerBinary(client)
		if err != nil || string(got) != want {
			t.Fatalf("frame %q, %v; want %q", got, err, want)
		}
	}
	if err := wsutil.WriteClientBinary(client, []byte("ignored")); err != nil {
		t.Fatal(err)
	}
	if err := wsutil.WriteClientMessage(client, ws.OpPing, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	h, err := ws.ReadHeader(client)
	if err != nil || h.OpCode != ws.OpPong || h.Length != 2 {
		t.Fatalf("answer to a ping: %+v, %v", h, err)
	}
	if _, err := io.CopyN(io.Discard, client, h.Length); err != nil {
		t.Fatal(err)
	}
	if err := wsutil.WriteClientMessage(client, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "")); err != nil {
		t.Fatal(err)
	}
	if h, err := ws.ReadHeader(client); err != nil || h.OpCode != ws.OpClose {
		t.Fatalf("answer to a close: %+v, %v", h, err)
	}
	go io.Copy(io.Discard, client) // the close code, until Serve closes
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the client's close")
	}
}

// TestWriteFrameAllocs: writing a frame into the buffer allocates nothing.
func TestWriteFrameAllocs(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	go io.Copy(io.Discard, client)
	c := New(server, 64<<10)
	f := make([]byte, 300)
	if n := testing.AllocsPerRun(100, func() { _ = c.WriteFrame(f, true) }); n != 0 {
		t.Errorf("WriteFrame: %v allocations, want 0", n)
	}
}

// FuzzReadControl feeds arbitrary client bytes to the control-frame reader:
// it must never panic and must end the stream on any input.
func FuzzReadControl(f *testing.F) {
	f.Add([]byte{0x89, 0x80, 1, 2, 3, 4})                            // masked empty ping
	f.Add([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8})                // close 1000
	f.Add([]byte{0x82, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0}) // huge data frame
	f.Add([]byte{0x09, 0x7e, 0x01, 0x00})                            // fragmented ping, too long
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &Conn{bw: bufio.NewWriter(io.Discard), done: make(chan struct{})}
		c.ReadControl(bufio.NewReader(bytes.NewReader(in)))
		select {
		case <-c.Done():
		default:
			t.Fatal("reader returned without finishing the stream")
		}
	})
}
