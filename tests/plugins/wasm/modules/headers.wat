  ;; Header maps and a local reply. Request: x-deny -> 403 local reply (with x-denied: wasm,
  ;; then returns Continue, which must not undo the reply); else adds x-wasm-added: yes,
  ;; removes x-remove-me, replaces x-replace, and with x-rewrite moves :path to
  ;; x-original-path and sets :path to /rewritten. Response: adds x-wasm-response: yes.
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 1024) "x-wasm-added")
  (data (i32.const 1088) "yes")
  (data (i32.const 1152) "x-remove-me")
  (data (i32.const 1216) "x-replace")
  (data (i32.const 1280) "replaced")
  (data (i32.const 1344) "x-deny")
  (data (i32.const 1408) "forbidden by wasm\n")
  (data (i32.const 1472) "denied by test module")
  (data (i32.const 1536) "\01\00\00\00\08\00\00\00\04\00\00\00x-denied\00wasm\00")
  (data (i32.const 1600) "x-wasm-response")
  (data (i32.const 1664) ":path")
  (data (i32.const 1728) "x-original-path")
  (data (i32.const 1792) "/rewritten")
  (data (i32.const 1856) "x-rewrite")
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32)
    (result i32)
    (if (call $hdr_has (i32.const 0) (i32.const 1344) (i32.const 6))
      (then
        (drop (call $proxy_send_local_response (i32.const 403)
          (i32.const 1472) (i32.const 21) (i32.const 1408) (i32.const 18)
          (i32.const 1536) (i32.const 26) (i32.const -1)))
        (return (i32.const 0))))
    (call $hdr_add (i32.const 0) (i32.const 1024) (i32.const 12) (i32.const 1088) (i32.const 3))
    (drop (call $proxy_remove_header_map_value (i32.const 0) (i32.const 1152) (i32.const 11)))
    (drop (call $proxy_replace_header_map_value
      (i32.const 0) (i32.const 1216) (i32.const 9) (i32.const 1280) (i32.const 8)))
    (if (call $hdr_has (i32.const 0) (i32.const 1856) (i32.const 9))
      (then
        (drop (call $proxy_get_header_map_value
          (i32.const 0) (i32.const 1664) (i32.const 5) (i32.const 16) (i32.const 20)))
        (call $hdr_add (i32.const 0) (i32.const 1728) (i32.const 15)
          (i32.load (i32.const 16)) (i32.load (i32.const 20)))
        (drop (call $proxy_replace_header_map_value
          (i32.const 0) (i32.const 1664) (i32.const 5) (i32.const 1792) (i32.const 10)))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (call $hdr_add (i32.const 2) (i32.const 1600) (i32.const 15) (i32.const 1088) (i32.const 3))
    (i32.const 0))
