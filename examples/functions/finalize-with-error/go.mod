module example.com/functions/finalize-with-error

go 1.22

require (
	example.com/shared/errors v0.0.0
	example.com/shared/logger v0.0.0
	example.com/shared/s3state v0.0.0
	example.com/shared/schema v0.0.0
)

// Replace directives apply only in the main module, so every shared module in
// the build, including those reached only through another shared module,
// needs its own line here.
replace (
	example.com/shared/errors => ../../shared/errors
	example.com/shared/logger => ../../shared/logger
	example.com/shared/s3state => ../../shared/s3state
	example.com/shared/schema => ../../shared/schema
)
