import pkg from "../package.json" with { type: "json" };

/**
 * cachegate's version: package.json's "version", the one place it is set.
 * `--version`, GET /api/version, the start-up log line and the
 * cachegate_build_info metric all read it from here.
 */
export const VERSION: string = pkg.version;
