package harness

import (
	"bytes"
	"errors"
	"image/color"
	"image/png"
	"math"
	"testing"
)

func TestFontTable(t *testing.T) {
	if len(fontBits) != len(fontChars)*glyphH {
		t.Fatalf("%d glyph rows for %d glyphs", len(fontBits), len(fontChars))
	}
	for i := range fontBits {
		if fontBits[i] >= 1<<glyphW {
			t.Fatalf("row %d of glyph %q is wider than %d columns", i%glyphH, fontChars[i/glyphH], glyphW)
		}
	}
}

// syntheticReport has a memory time series shaped like a run.
func syntheticReport(scale float64) Report {
	r := Report{Capture: "test", Pacing: "max"}
	for i := range 60 {
		t := float64(i)
		r.Samples = append(r.Samples, Sample{
			T:                 t,
			RSSBytes:          scale * (40 + 20*math.Sin(t/8)) * (1 << 20),
			HeapInuseBytes:    scale * (20 + 10*math.Sin(t/5)) * (1 << 20),
			HeapReleasedBytes: scale * t / 3 * (1 << 20),
		})
	}
	return r
}

func TestWriteMemoryPNG(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMemoryPNG(&buf, []Report{syntheticReport(1), syntheticReport(2)}, []string{"ours", "reference"}); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	if b.Dx() != chartW || b.Dy() < 3*panelH {
		t.Fatalf("size %v", b)
	}
	counts := map[color.NRGBA]int{}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			counts[color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)]++
		}
	}
	// Both lines are drawn across three panels, and text and axes exist.
	for i, min := range []int{3000, 3000} {
		if counts[chartPalette(i)] < min {
			t.Errorf("series %d: %d pixels", i, counts[chartPalette(i)])
		}
	}
	if counts[chartInk()] < 2000 || counts[chartGrid()] < 1000 {
		t.Errorf("ink %d grid %d pixels", counts[chartInk()], counts[chartGrid()])
	}
	if err := WriteMemoryPNG(&buf, []Report{{}}, nil); !errors.Is(err, ErrChartEmpty) {
		t.Errorf("empty: %v", err)
	}
}

func TestNiceCeil(t *testing.T) {
	f := func(v, want float64) {
		t.Helper()
		if got := niceCeil(v); math.Abs(got-want) > 1e-9*want {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
	f(0, 1)
	f(-3, 1)
	f(0.3, 0.3)
	f(1, 1)
	f(1.1, 1.2)
	f(37, 40)
	f(51, 60)
	f(59.2, 60)
	f(810, 1000)
}
