# esmd container image: docker build -t esmd .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/esmd ./cmd/esmd && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/esmd /esmd
# The store lives in /data, owned by the image's non-root user.
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
EXPOSE 9000
ENTRYPOINT ["/esmd"]
# The API listens on every interface of the container, so it requires
# SigV4-signed requests with the keys of a credentials file (the AWS
# shared-credentials format) mounted at /run/secrets/esmd-api-credentials:
#   docker run -v "$PWD/api-credentials:/run/secrets/esmd-api-credentials:ro" -p 127.0.0.1:9000:9000 esmd
# Without the file esmd does not start. See SECURITY.md.
CMD ["serve", "--addr", "0.0.0.0:9000", "--data-dir", "/data", "--api-credentials", "/run/secrets/esmd-api-credentials"]
