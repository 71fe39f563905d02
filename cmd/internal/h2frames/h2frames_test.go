package h2frames

import (
	"encoding/binary"
	"testing"
)

func frame(typ byte, stream uint32, payload []byte) []byte {
	f := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, 0}
	f = binary.BigEndian.AppendUint32(f, stream)
	return append(f, payload...)
}

// Frames are read however the bytes arrive: here one at a time, after the
// client's preface.
func TestCounter(t *testing.T) {
	var b []byte
	b = append(b, preface...)
	settings := binary.BigEndian.AppendUint16(nil, 0x4) // INITIAL_WINDOW_SIZE
	settings = binary.BigEndian.AppendUint32(settings, 1<<22)
	settings = append(binary.BigEndian.AppendUint16(settings, 0x3), 0, 0, 0, 100) // MAX_CONCURRENT_STREAMS
	b = append(b, frame(0x4, 0, settings)...)
	b = append(b, frame(0x8, 0, binary.BigEndian.AppendUint32(nil, 1<<22-65535))...)
	b = append(b, frame(0x8, 0, binary.BigEndian.AppendUint32(nil, 7))...) // a later update: not the announcement
	b = append(b, frame(0x8, 1, binary.BigEndian.AppendUint32(nil, 9))...) // a stream's: not the connection's
	b = append(b, frame(0x6, 0, make([]byte, 8))...)
	b = append(b, frame(0x0, 1, make([]byte, 300))...) // DATA
	b = append(b, frame(0x6, 0, make([]byte, 8))...)
	c := newCounter(len(preface))
	for i := range b {
		c.add(b[i : i+1])
	}
	if stream, conn := c.Windows(); stream != 1<<22 || conn != 1<<22 {
		t.Errorf("windows %d a stream, %d the connection; want %d", stream, conn, 1<<22)
	}
	if p := c.Pings(); p != 2 {
		t.Errorf("%d PINGs, want 2", p)
	}
	if stream, conn := newCounter(0).Windows(); stream != -1 || conn != -1 {
		t.Errorf("nothing announced: %d, %d", stream, conn)
	}
}
