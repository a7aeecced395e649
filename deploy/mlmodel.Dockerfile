# mlmodel itself as an image: the static `mlmodel` binary alone in an otherwise empty
# image (no shell, no libc). Built by scripts/build-mlmodel-image.sh, whose build context
# holds just the binary and this file; deployed by deploy/mlmodel.stack.yml.
FROM scratch
COPY mlmodel /mlmodel
# The defaults a container wants: the API on every interface, the store and the
# manifests on mounts. Every one can be overridden in the stack's environment.
ENV MLMODEL_LISTEN=0.0.0.0:8080 \
    MLMODEL_DATA_DIR=/data \
    MLMODEL_MANIFESTS=/manifests
EXPOSE 8080
# `mlmodel get` asks the API; it exits 3 when it cannot connect.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/mlmodel", "get"]
ENTRYPOINT ["/mlmodel"]
CMD ["serve"]
