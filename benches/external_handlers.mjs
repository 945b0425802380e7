// The handler registry of benches/jobs.sh's external worker (examples/job-worker): a no-op under
// a handler name the in-database runners do not serve, so only the external worker takes them.
export default { external_noop: async () => undefined };
