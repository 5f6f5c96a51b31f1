package harness

import (
	"image"
	"image/color"
	"strings"
)

// A 5×7 bitmap font for chart labels, so charts need no font module.
// fontChars lists the glyphs; fontBits holds 7 rows per glyph, top to
// bottom, each row's 5 low bits left to right (bit 4 = leftmost column).
const (
	fontChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:/%(),_=+ "
	fontBits  = "" +
		"\x0e\x11\x13\x15\x19\x11\x0e" + // 0
		"\x04\x0c\x04\x04\x04\x04\x0e" + // 1
		"\x0e\x11\x01\x02\x04\x08\x1f" + // 2
		"\x1f\x02\x04\x02\x01\x11\x0e" + // 3
		"\x02\x06\x0a\x12\x1f\x02\x02" + // 4
		"\x1f\x10\x1e\x01\x01\x11\x0e" + // 5
		"\x06\x08\x10\x1e\x11\x11\x0e" + // 6
		"\x1f\x01\x02\x04\x08\x08\x08" + // 7
		"\x0e\x11\x11\x0e\x11\x11\x0e" + // 8
		"\x0e\x11\x11\x0f\x01\x02\x0c" + // 9
		"\x0e\x11\x11\x1f\x11\x11\x11" + // A
		"\x1e\x11\x11\x1e\x11\x11\x1e" + // B
		"\x0e\x11\x10\x10\x10\x11\x0e" + // C
		"\x1c\x12\x11\x11\x11\x12\x1c" + // D
		"\x1f\x10\x10\x1e\x10\x10\x1f" + // E
		"\x1f\x10\x10\x1e\x10\x10\x10" + // F
		"\x0e\x11\x10\x17\x11\x11\x0f" + // G
		"\x11\x11\x11\x1f\x11\x11\x11" + // H
		"\x0e\x04\x04\x04\x04\x04\x0e" + // I
		"\x07\x02\x02\x02\x02\x12\x0c" + // J
		"\x11\x12\x14\x18\x14\x12\x11" + // K
		"\x10\x10\x10\x10\x10\x10\x1f" + // L
		"\x11\x1b\x15\x15\x11\x11\x11" + // M
		"\x11\x11\x19\x15\x13\x11\x11" + // N
		"\x0e\x11\x11\x11\x11\x11\x0e" + // O
		"\x1e\x11\x11\x1e\x10\x10\x10" + // P
		"\x0e\x11\x11\x11\x15\x12\x0d" + // Q
		"\x1e\x11\x11\x1e\x14\x12\x11" + // R
		"\x0f\x10\x10\x0e\x01\x01\x1e" + // S
		"\x1f\x04\x04\x04\x04\x04\x04" + // T
		"\x11\x11\x11\x11\x11\x11\x0e" + // U
		"\x11\x11\x11\x11\x11\x0a\x04" + // V
		"\x11\x11\x11\x15\x15\x15\x0a" + // W
		"\x11\x11\x0a\x04\x0a\x11\x11" + // X
		"\x11\x11\x11\x0a\x04\x04\x04" + // Y
		"\x1f\x01\x02\x04\x08\x10\x1f" + // Z
		"\x00\x00\x00\x00\x00\x0c\x0c" + // .
		"\x00\x00\x00\x1f\x00\x00\x00" + // -
		"\x00\x0c\x0c\x00\x0c\x0c\x00" + // :
		"\x00\x01\x02\x04\x08\x10\x00" + // /
		"\x18\x19\x02\x04\x08\x13\x03" + // %
		"\x02\x04\x08\x08\x08\x04\x02" + // (
		"\x08\x04\x02\x02\x02\x04\x08" + // )
		"\x00\x00\x00\x00\x0c\x04\x08" + // ,
		"\x00\x00\x00\x00\x00\x00\x1f" + // _
		"\x00\x00\x1f\x00\x1f\x00\x00" + // =
		"\x00\x04\x04\x1f\x04\x04\x00" + // +
		"\x00\x00\x00\x00\x00\x00\x00" // space
)

const (
	glyphW, glyphH = 5, 7
	glyphAdvance   = glyphW + 1 // one column of spacing
)

// textWidth is the width in pixels of s drawn at scale.
func textWidth(s string, scale int) int { return len(s) * glyphAdvance * scale }

// drawText draws s with its top-left corner at (x, y), each font pixel a
// scale×scale square. Lower case is drawn as upper case; characters
// without a glyph are drawn as spaces.
func drawText(img *image.NRGBA, x, y int, s string, c color.NRGBA, scale int) {
	for _, r := range strings.ToUpper(s) {
		if i := strings.IndexRune(fontChars, r); i >= 0 {
			for row := range glyphH {
				bits := fontBits[i*glyphH+row]
				for col := range glyphW {
					if bits&(1<<(glyphW-1-col)) != 0 {
						fillRect(img, x+col*scale, y+row*scale, scale, scale, c)
					}
				}
			}
		}
		x += glyphAdvance * scale
	}
}

// fillRect fills a w×h rectangle, clipped to the image.
func fillRect(img *image.NRGBA, x, y, w, h int, c color.NRGBA) {
	r := image.Rect(x, y, x+w, y+h).Intersect(img.Bounds())
	for py := r.Min.Y; py < r.Max.Y; py++ {
		for px := r.Min.X; px < r.Max.X; px++ {
			img.SetNRGBA(px, py, c)
		}
	}
}
