module example.com/functions/greet

go 1.22

require (
	example.com/shared/logger v0.0.0
	example.test/greeting v1.1.0
)

require example.test/textcase v1.2.0 // indirect

// The shared logger is a local module; greeting and textcase come from a
// module proxy (GOPROXY), which the build must be given.
replace example.com/shared/logger => ../../shared/logger
