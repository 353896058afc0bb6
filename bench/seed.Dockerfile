# The seed pipeline's build: deployer's build template before the built-in Go build, kept for the
# benches as the reference (bench/seed_pipeline.py writes it into an assembled context as
# Dockerfile.seed).
#
# Build args (bench/seed_pipeline.py passes all of them; the defaults mirror deployer's defaults):
#   BUILDPLATFORM   platform of the engine that runs the builder stage
#   TARGETPLATFORM  platform of the image, e.g. linux/arm64
#   TARGETARCH      GOARCH for the binary, e.g. arm64
#   BUILDER_IMAGE   Go toolchain image (needs /bin/sh and go on PATH)
#   RUNTIME_IMAGE   Lambda base image for TARGETPLATFORM
#   GO_BUILD_FLAGS  extra `go build` flags as ONE shell-quoted string (Python shlex.join), read
#                   with `eval set --` so a flag holding a space (-ldflags=-s -w) stays one word
#   GOPROXY         unset = Go's default (proxy.golang.org); tests pass GOPROXY=off. An ENV GOPROXY
#                   of the builder image overrides this ARG (the stand-in builder sets off)
#
# The ARGs used in FROM are declared before the first FROM: the classic builder (docker SDK)
# expands `FROM --platform=$VAR` only then.
ARG BUILDPLATFORM=linux/amd64
ARG TARGETPLATFORM=linux/arm64
ARG BUILDER_IMAGE=golang:1.24-alpine
ARG RUNTIME_IMAGE=public.ecr.aws/lambda/provided:al2-arm64

# The builder runs on the engine's own platform and cross-compiles: no emulation needed.
FROM --platform=$BUILDPLATFORM $BUILDER_IMAGE AS builder
ARG TARGETARCH=arm64
ARG GO_BUILD_FLAGS="-trimpath '-ldflags=-s -w'"
ARG GOPROXY
WORKDIR /src
# Compile the standard library for the target first, in a layer of its own: it depends only on the
# builder image, the target architecture and the flags, so every function and every source change
# built on this engine reuses it, and an incremental build compiles only the function's packages.
RUN eval "set -- $GO_BUILD_FLAGS" \
 && CGO_ENABLED=0 GOOS=linux GOARCH="$TARGETARCH" go build "$@" std
# The context holds the function at its root and its shared modules under shared/<name>, with
# go.mod replace directives already rewritten to those paths.
COPY . .
RUN eval "set -- $GO_BUILD_FLAGS" \
 && CGO_ENABLED=0 GOOS=linux GOARCH="$TARGETARCH" GOFLAGS=-mod=mod \
    go build "$@" -o /out/bootstrap .

# The runtime stage has no RUN step: it is the target architecture, which this engine may not be
# able to execute. CA certificates come from the runtime base (the AWS Lambda base images ship
# them in /etc/pki and /etc/ssl).
FROM --platform=$TARGETPLATFORM $RUNTIME_IMAGE
COPY --from=builder /out/bootstrap /var/runtime/bootstrap
ENTRYPOINT ["/var/runtime/bootstrap"]
