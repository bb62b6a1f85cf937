// A Proxy-Wasm HTTP filter written with the public AssemblyScript SDK
// (@solo-io/proxy-runtime 0.1.8 from npm), used unmodified by plait's tests.
//
// Request: a path starting with /deny gets a local 403 reply with x-denied-by;
// any other request gets x-plait-wasm: as. Response: x-plait-config carries the
// plugin configuration the root context received in proxy_on_configure.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext,
  Context,
  registerRootContext,
  FilterHeadersStatusValues,
  GrpcStatusValues,
  HeaderPair,
  Headers,
  stream_context,
  send_local_response,
} from "@solo-io/proxy-runtime";

class HeadersRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new HeadersFilter(context_id, this);
  }
}

class HeadersFilter extends Context {
  constructor(context_id: u32, root_context: HeadersRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const path = stream_context.headers.request.get(":path");
    if (path.startsWith("/deny")) {
      const extra: Headers = [];
      extra.push(new HeaderPair(String.UTF8.encode("x-denied-by"), String.UTF8.encode("plait-as")));
      send_local_response(403, "denied by the as filter", String.UTF8.encode("denied\n"), extra,
        GrpcStatusValues.Unknown);
      return FilterHeadersStatusValues.StopIteration;
    }
    stream_context.headers.request.add("x-plait-wasm", "as");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-plait-config", this.root_context.getConfiguration());
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32) => {
  return new HeadersRoot(context_id);
}, "plait_headers");
