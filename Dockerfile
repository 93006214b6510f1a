# sockbench in a container, like fortio's image:
#   make docker                  # builds sockbench:<version> and sockbench:latest
#   docker run --rm --network host sockbench load --target tcp://127.0.0.1:7000
#   docker run --rm -p 7000:7000 sockbench serve --addr 0.0.0.0:7000
# The build context holds no .git (.dockerignore), so the version and commit
# come in as build arguments; make docker passes them from git.

# Build: one static binary, with the flags of the Makefile's cross-builds
# (CROSS and LDFLAGS; cmd/sockbench's tests check that they match).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/sockbench ./cmd/sockbench

# Run: no shell, no package manager, a non-root user (distroless's nonroot,
# uid 65532) with a home to write results in and a /tmp for Unix sockets.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sockbench /usr/local/bin/sockbench
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 7000
ENTRYPOINT ["/usr/local/bin/sockbench"]
CMD ["--help"]
