package harness

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
)

// ErrChartEmpty: no report given has any sample.
var ErrChartEmpty = errors.New("harness: nothing to chart")

// Chart geometry, in pixels.
const (
	chartW      = 1000
	panelH      = 260
	legendRowH  = 24
	marginLeft  = 90
	marginRight = 60
	marginTop   = 36 // room for the panel title
	marginBot   = 40 // room for the x tick labels
	textScale   = 2
)

// chartPalette colours the reports' lines in order, then repeats.
func chartPalette(i int) color.NRGBA {
	p := [...]color.NRGBA{
		{0x1f, 0x77, 0xb4, 0xff}, {0xd6, 0x27, 0x28, 0xff}, {0x2c, 0xa0, 0x2c, 0xff},
		{0xff, 0x7f, 0x0e, 0xff}, {0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff},
	}
	return p[i%len(p)]
}

// chartInk is the colour of text and axes.
func chartInk() color.NRGBA { return color.NRGBA{0x30, 0x30, 0x30, 0xff} }

// chartGrid is the colour of grid lines.
func chartGrid() color.NRGBA { return color.NRGBA{0xe0, 0xe0, 0xe0, 0xff} }

// memoryPanels are the charted series: title and the Sample field.
func memoryPanels() []struct {
	title string
	value func(Sample) float64
} {
	return []struct {
		title string
		value func(Sample) float64
	}{
		{"RSS (MiB)", func(s Sample) float64 { return s.RSSBytes }},
		{"Go heap in use (MiB)", func(s Sample) float64 { return s.HeapInuseBytes }},
		{"Go heap released (MiB)", func(s Sample) float64 { return s.HeapReleasedBytes }},
	}
}

// WriteMemoryPNG draws the relay's RSS, Go heap in use and Go heap
// released over time (seconds since the gate opened), one panel each, one
// coloured line per report, and writes it as PNG. names label the
// reports in the legend; a missing name defaults to the report's capture
// and pacing.
func WriteMemoryPNG(w io.Writer, reports []Report, names []string) error {
	var maxT float64
	found := false
	for _, r := range reports {
		for _, s := range r.Samples {
			maxT, found = max(maxT, s.T), true
		}
	}
	if !found {
		return ErrChartEmpty
	}
	panels := memoryPanels()
	legendH := legendRowH*len(reports) + 12
	img := image.NewNRGBA(image.Rect(0, 0, chartW, legendH+panelH*len(panels)))
	fillRect(img, 0, 0, chartW, img.Bounds().Dy(), color.NRGBA{0xff, 0xff, 0xff, 0xff})
	for i, r := range reports {
		name := fmt.Sprintf("%s %s", r.Capture, r.Pacing)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		y := 8 + i*legendRowH
		fillRect(img, marginLeft, y+2, 24, 10, chartPalette(i))
		drawText(img, marginLeft+34, y, name, chartInk(), textScale)
	}
	xMax := niceCeil(maxT)
	for p, panel := range panels {
		top := legendH + p*panelH
		var yMax float64
		for _, r := range reports {
			for _, s := range r.Samples {
				yMax = max(yMax, panel.value(s)/(1<<20))
			}
		}
		yMax = niceCeil(yMax)
		area := image.Rect(marginLeft, top+marginTop, chartW-marginRight, top+panelH-marginBot)
		drawText(img, marginLeft, top+10, panel.title, chartInk(), textScale)
		drawAxes(img, area, xMax, yMax)
		for i, r := range reports {
			c := chartPalette(i)
			px := func(s Sample) image.Point {
				return image.Point{
					X: area.Min.X + int(math.Round(s.T/xMax*float64(area.Dx()))),
					Y: area.Max.Y - int(math.Round(panel.value(s)/(1<<20)/yMax*float64(area.Dy()))),
				}
			}
			for k := 1; k < len(r.Samples); k++ {
				drawLine(img, px(r.Samples[k-1]), px(r.Samples[k]), c)
			}
			if len(r.Samples) == 1 {
				q := px(r.Samples[0])
				fillRect(img, q.X-2, q.Y-2, 5, 5, c)
			}
		}
	}
	return png.Encode(w, img)
}

// drawAxes draws the frame, grid lines and tick labels: five y ticks in
// MiB and five x ticks in seconds.
func drawAxes(img *image.NRGBA, a image.Rectangle, xMax, yMax float64) {
	const ticks = 5
	for i := 0; i <= ticks; i++ {
		y := a.Max.Y - i*a.Dy()/ticks
		drawLine(img, image.Pt(a.Min.X, y), image.Pt(a.Max.X, y), chartGrid())
		label := tickLabel(yMax * float64(i) / ticks)
		drawText(img, a.Min.X-8-textWidth(label, textScale), y-glyphH*textScale/2, label, chartInk(), textScale)
		x := a.Min.X + i*a.Dx()/ticks
		drawLine(img, image.Pt(x, a.Max.Y), image.Pt(x, a.Max.Y+5), chartInk())
		label = tickLabel(xMax*float64(i)/ticks) + "S"
		drawText(img, x-textWidth(label, textScale)/2, a.Max.Y+10, label, chartInk(), textScale)
	}
	drawLine(img, a.Min, image.Pt(a.Min.X, a.Max.Y), chartInk())
	drawLine(img, image.Pt(a.Min.X, a.Max.Y), a.Max, chartInk())
}

// tickLabel formats a tick value compactly.
func tickLabel(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// niceCeil rounds v up to a round multiple of a power of ten (1 for
// v ≤ 0) that keeps ticks at fifths on readable numbers while wasting
// little of the plot.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// drawLine draws a two-pixel-thick line (Bresenham).
func drawLine(img *image.NRGBA, a, b image.Point, c color.NRGBA) {
	dx, dy := abs(b.X-a.X), -abs(b.Y-a.Y)
	sx, sy := sign(b.X-a.X), sign(b.Y-a.Y)
	e := dx + dy
	x, y := a.X, a.Y
	for {
		fillRect(img, x, y, 2, 2, c)
		if x == b.X && y == b.Y {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x += sx
		}
		if e2 <= dx {
			e += dx
			y += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
