// Package greeting says hello. Served by the local cloud's module proxy
// (tests/localcloud/goproxy.py) as a public module.
package greeting

import (
	"strings"

	"example.test/textcase"
)

// Hello greets name in title case ("ada lovelace" -> "Hello, Ada Lovelace!"),
// or the world when name is blank.
func Hello(name string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "world"
	}
	return "Hello, " + textcase.Title(name) + "!"
}
