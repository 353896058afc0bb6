// Package greeting says hello. Served by the local cloud's module proxy
// (tests/localcloud/goproxy.py) as a public module.
package greeting

// Hello greets name, or the world when name is empty.
func Hello(name string) string {
	if name == "" {
		name = "world"
	}
	return "Hello, " + name + "!"
}
