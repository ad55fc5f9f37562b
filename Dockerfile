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
CMD ["serve", "--addr", "0.0.0.0:9000", "--data-dir", "/data"]
