  ;; Shared data across plugins: a request with x-set stores its value under "sk" (CAS 0);
  ;; every request then gets x-shared (the stored value) and x-cas-mismatch (the status of a
  ;; set with the stored CAS + 1: CAS_MISMATCH is 8, as "8").
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 1024) "x-set")
  (data (i32.const 1040) "sk")
  (data (i32.const 1056) "x-shared")
  (data (i32.const 1072) "x-cas-mismatch")
  (data (i32.const 1088) "0123456789")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $status i32)
    (if (call $hdr_has (i32.const 0) (i32.const 1024) (i32.const 5))
      (then (drop (call $proxy_set_shared_data (i32.const 1040) (i32.const 2)
        (i32.load (i32.const 16)) (i32.load (i32.const 20)) (i32.const 0)))))
    (if (i32.eqz (call $proxy_get_shared_data (i32.const 1040) (i32.const 2)
          (i32.const 16) (i32.const 20) (i32.const 40)))
      (then
        (call $hdr_add (i32.const 0) (i32.const 1056) (i32.const 8)
          (i32.load (i32.const 16)) (i32.load (i32.const 20)))
        (local.set $status (call $proxy_set_shared_data (i32.const 1040) (i32.const 2)
          (i32.const 1088) (i32.const 1) (i32.add (i32.load (i32.const 40)) (i32.const 1))))
        (call $hdr_add (i32.const 0) (i32.const 1072) (i32.const 14)
          (i32.add (i32.const 1088) (local.get $status)) (i32.const 1))))
    (i32.const 0))
