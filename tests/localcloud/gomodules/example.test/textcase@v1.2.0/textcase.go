// Package textcase changes the case of words. Served by the local cloud's
// module proxy (tests/localcloud/goproxy.py) as a public module.
package textcase

import (
	"strings"
	"unicode"
)

// Title upper-cases the first letter of every space-separated word and
// lower-cases the rest; runs of spaces are kept as they are.
func Title(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	start := true
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			start = true
		case start:
			r, start = unicode.ToTitle(r), false
		default:
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Words reports how many space-separated words s has.
func Words(s string) int { return len(strings.Fields(s)) }
