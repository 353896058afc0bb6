// Package vault stands for a company's private module: the local cloud's
// module proxy (tests/localcloud/goproxy.py) serves it only with credentials.
package vault

import "strings"

// Mask hides all but the last four characters of secret.
func Mask(secret string) string {
	if len(secret) <= 4 {
		return strings.Repeat("*", len(secret))
	}
	return strings.Repeat("*", len(secret)-4) + secret[len(secret)-4:]
}
