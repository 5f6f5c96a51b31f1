package wsframe

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"
)

// TestPutHeaderMatchesGobwas: every length class encodes exactly as
// gobwas/ws writes the same header.
func TestPutHeaderMatchesGobwas(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 5_000_000} {
		for _, op := range []byte{OpText, OpBinary, OpClose, OpPing, OpPong} {
			var dst [HeaderMax]byte
			got := dst[:PutHeader(dst[:], op, n)]
			var want bytes.Buffer
			if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: ws.OpCode(op), Length: int64(n)}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("op %x len %d: % x, gobwas writes % x", op, n, got, want.Bytes())
			}
		}
	}
}
