  ;; Pause until the end of the stream, then rewrite the body (ABI 0.2.0 marker).
  ;; Request: headers pause until the body is complete (content-length removed); at the
  ;; end the body gets the prefix "[wasm]" and the held headers x-body-seen: yes.
  ;; Response: content-length removed, body paused until the end, then "[wasm-response]"
  ;; appended.
  (func (export "proxy_abi_version_0_2_0"))
  (data (i32.const 1024) "[wasm]")
  (data (i32.const 1088) "x-body-seen")
  (data (i32.const 1152) "yes")
  (data (i32.const 1216) "content-length")
  (data (i32.const 1280) "[wasm-response]")
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32)
    (result i32)
    (if (local.get $eos) (then (return (i32.const 0))))
    (drop (call $proxy_remove_header_map_value (i32.const 0) (i32.const 1216) (i32.const 14)))
    (i32.const 1))
  (func (export "proxy_on_request_body") (param $ctx i32) (param $size i32) (param $eos i32)
    (result i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    ;; the whole body is readable: fail loudly if it is not
    (if (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (local.get $size)
          (i32.const 16) (i32.const 20))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 20)) (local.get $size)) (then unreachable))
    (drop (call $proxy_set_buffer_bytes
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1024) (i32.const 6)))
    (call $hdr_add (i32.const 0) (i32.const 1088) (i32.const 11) (i32.const 1152) (i32.const 3))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $proxy_remove_header_map_value (i32.const 2) (i32.const 1216) (i32.const 14)))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param $ctx i32) (param $size i32) (param $eos i32)
    (result i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
    (drop (call $proxy_set_buffer_bytes
      (i32.const 1) (local.get $size) (i32.const 0) (i32.const 1280) (i32.const 15)))
    (i32.const 0))
