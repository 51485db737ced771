//! Every span and resource attribute name pytracer writes, in one place. The names are those of
//! the OpenTelemetry semantic conventions (stable HTTP, database and code conventions; the
//! `pytracer.` ones are our own), so a rename upstream is a one-line change here.

// HTTP, server and client (https://opentelemetry.io/docs/specs/semconv/http/http-spans/).
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
pub const HTTP_REQUEST_BODY_SIZE: &str = "http.request.body.size";
pub const HTTP_RESPONSE_BODY_SIZE: &str = "http.response.body.size";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
pub const HTTP_REQUEST_HEADER_TRACEPARENT: &str = "http.request.header.traceparent";
pub const URL_PATH: &str = "url.path";
pub const URL_QUERY: &str = "url.query";
pub const URL_SCHEME: &str = "url.scheme";
pub const URL_FULL: &str = "url.full";
/// The wire's guess at a route (ids replaced), never `http.route`.
pub const URL_TEMPLATE: &str = "url.template";
/// The framework's route, as read from the app: set only when a rule matched.
pub const HTTP_ROUTE: &str = "http.route";
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
/// Ours: the request head did not fit the capture, so some headers were not seen.
pub const PYTRACER_HTTP_REQUEST_HEAD_TRUNCATED: &str = "pytracer.http.request.head_truncated";

// Network peers.
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const CLIENT_ADDRESS: &str = "client.address";
pub const CLIENT_PORT: &str = "client.port";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
pub const NETWORK_PEER_PORT: &str = "network.peer.port";

pub const ERROR_TYPE: &str = "error.type";
/// Ours: bytes the caller received of a reply the connection cut (a reset, an early close).
pub const PYTRACER_RESPONSE_BYTES_RECEIVED: &str = "pytracer.response.bytes_received";
/// Seconds the call's connect took (from its entry to its exit, or to the first write of a
/// non-blocking one), on the connection's first call, which lived it. No convention has one.
pub const PYTRACER_CONNECT_DURATION: &str = "pytracer.connect.duration";
/// `pytracer profile`: CPU samples that fell in a server span, and the frame most of them were
/// in (`module:function:line`).
pub const PYTRACER_PROFILE_SAMPLES: &str = "pytracer.profile.samples";
pub const PYTRACER_PROFILE_HOTTEST: &str = "pytracer.profile.hottest_frame";

// Databases (https://opentelemetry.io/docs/specs/semconv/database/).
pub const DB_SYSTEM_NAME: &str = "db.system.name";
pub const DB_NAMESPACE: &str = "db.namespace";
pub const DB_QUERY_TEXT: &str = "db.query.text";
pub const DB_OPERATION_NAME: &str = "db.operation.name";
pub const DB_OPERATION_BATCH_SIZE: &str = "db.operation.batch.size";
pub const DB_RESPONSE_STATUS_CODE: &str = "db.response.status_code";
pub const DB_RESPONSE_RETURNED_ROWS: &str = "db.response.returned_rows";
pub const DB_REDIS_KEY_COUNT: &str = "db.redis.key_count";

// The Python code that handled a request or made a call.
pub const CODE_FUNCTION_NAME: &str = "code.function.name";
pub const CODE_FILE_PATH: &str = "code.file.path";
pub const CODE_LINE_NUMBER: &str = "code.line.number";

// Resource.
pub const SERVICE_NAME: &str = "service.name";
pub const PROCESS_PID: &str = "process.pid";
pub const PROCESS_EXECUTABLE_NAME: &str = "process.executable.name";
pub const PROCESS_EXECUTABLE_PATH: &str = "process.executable.path";

// Where a process runs, from the node alone (crate::container): resource attributes of
// processes in a container only (https://opentelemetry.io/docs/specs/semconv/resource/k8s/).
pub const CONTAINER_ID: &str = "container.id";
pub const K8S_POD_UID: &str = "k8s.pod.uid";
pub const K8S_POD_NAME: &str = "k8s.pod.name";
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
pub const K8S_CONTAINER_NAME: &str = "k8s.container.name";
/// The agent's `NODE_NAME` (the DaemonSet sets it from the downward API).
pub const K8S_NODE_NAME: &str = "k8s.node.name";
/// Ours: the pid inside the container's pid namespace (the innermost `NSpid`), next to
/// `process.pid`, the host's. OpenTelemetry has no attribute for it.
pub const PYTRACER_PROCESS_VPID: &str = "pytracer.process.vpid";
