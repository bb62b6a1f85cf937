  ;; The SDK examples' body rewrite: request headers continue (content-length removed, so
  ;; the rewritten body is framed anew); the body pauses until its end, then gets the
  ;; prefix "[wasm]".
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 1024) "[wasm]")
  (data (i32.const 1088) "content-length")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $proxy_remove_header_map_value (i32.const 0) (i32.const 1088) (i32.const 14)))
    (i32.const 0))
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32)
    (result i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (drop (call $proxy_set_buffer_bytes
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1024) (i32.const 6)))
    (i32.const 0))
