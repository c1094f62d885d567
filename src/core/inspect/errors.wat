;; The inner loops of the quantization-error measurement (errorKernels.ts drives them, error.ts says what is
;; measured), over one layer's row block at a time. errorKernels.ts holds a JS engine that computes the same
;; values with the same IEEE operations in the same order; tests compare the two bit for bit.
;;
;; Memory: one imported memory (env.mem), sized by the caller, which makes a new instance rather than grow it
;; (see instantiateWithMemory in src/core/util/wasm.ts). Pointers are byte offsets; f32 arrays unless said.
;; Alignment hints are left at their natural values: V8 ignores them, every access here may be unaligned.
(module
  (import "env" "mem" (memory 1))
  (export "mem" (memory 0))

  ;; -------------------------------------------------------------------------------------------------------
  ;; Reconstruction: a[i] = ŵ = (q[i] − zp[cell]) · scale[cell] for codes [i, end), cell = ⌊i / cellLen⌋
  ;; (cells are consecutive runs: tensor, channel, group without g_idx). params: q (bytes), a, i, end,
  ;; cellLen, scalePtr, zpPtr.
  ;; Why float32 is exact here: q − zp is exact in float32 (int8 differences; E4M3 values have 4 significant
  ;; bits and exponents in [−9, 8], so a difference of two has ≤ 21), and so is the float64 product (≤ 21 + 24
  ;; bits): one float32 multiply rounds it exactly as fround((q − zp) · scale) in float64 does.
  ;; E4M3 NaN codes (0x7f, 0xff) are never produced by RTN (it saturates); they would read as ±480.
  ;; -------------------------------------------------------------------------------------------------------

  ;; int8 codes, no zero point: ŵ = q · s
  (func (export "reconI8")
    (param $q i32) (param $a i32) (param $i i32) (param $end i32) (param $cellLen i32) (param $scalePtr i32) (param $zpPtr i32)
    (local $cell i32) (local $cellEnd i32) (local $s v128) (local $zp v128) (local $code v128) (local $mag v128)
    block $done
      loop $cellLoop
        local.get $i  local.get $end  i32.ge_u  br_if $done
        ;; cell = i / cellLen; cellEnd = min(end, (cell + 1) · cellLen)
        local.get $i  local.get $cellLen  i32.div_u  local.tee $cell  i32.const 1  i32.add  local.get $cellLen  i32.mul  local.set $cellEnd
        local.get $cellEnd  local.get $end  local.get $cellEnd  local.get $end  i32.lt_u  select  local.set $cellEnd
        local.get $scalePtr  local.get $cell  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        ;; four codes at a time
        block $foursDone
          loop $fours
            local.get $i  i32.const 4  i32.add  local.get $cellEnd  i32.gt_u  br_if $foursDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  v128.load32_zero  i16x8.extend_low_i8x16_s  i32x4.extend_low_i16x8_s
            f32x4.convert_i32x4_s
            local.get $s  f32x4.mul
            v128.store
            local.get $i  i32.const 4  i32.add  local.set $i
            br $fours
          end
        end
        ;; the rest of the cell one at a time, through the same vector code
        block $onesDone
          loop $ones
            local.get $i  local.get $cellEnd  i32.ge_u  br_if $onesDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  i32.load8_s  i32x4.splat
            f32x4.convert_i32x4_s
            local.get $s  f32x4.mul
            f32x4.extract_lane 0  f32.store
            local.get $i  i32.const 1  i32.add  local.set $i
            br $ones
          end
        end
        br $cellLoop
      end
    end)

  ;; int8 codes with zero points: ŵ = (q − zp) · s
  (func (export "reconI8Zp")
    (param $q i32) (param $a i32) (param $i i32) (param $end i32) (param $cellLen i32) (param $scalePtr i32) (param $zpPtr i32)
    (local $cell i32) (local $cellEnd i32) (local $s v128) (local $zp v128) (local $code v128) (local $mag v128)
    block $done
      loop $cellLoop
        local.get $i  local.get $end  i32.ge_u  br_if $done
        ;; cell = i / cellLen; cellEnd = min(end, (cell + 1) · cellLen)
        local.get $i  local.get $cellLen  i32.div_u  local.tee $cell  i32.const 1  i32.add  local.get $cellLen  i32.mul  local.set $cellEnd
        local.get $cellEnd  local.get $end  local.get $cellEnd  local.get $end  i32.lt_u  select  local.set $cellEnd
        local.get $scalePtr  local.get $cell  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        local.get $zpPtr  local.get $cell  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $zp
        ;; four codes at a time
        block $foursDone
          loop $fours
            local.get $i  i32.const 4  i32.add  local.get $cellEnd  i32.gt_u  br_if $foursDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  v128.load32_zero  i16x8.extend_low_i8x16_s  i32x4.extend_low_i16x8_s
            f32x4.convert_i32x4_s
            local.get $zp  f32x4.sub  local.get $s  f32x4.mul
            v128.store
            local.get $i  i32.const 4  i32.add  local.set $i
            br $fours
          end
        end
        ;; the rest of the cell one at a time, through the same vector code
        block $onesDone
          loop $ones
            local.get $i  local.get $cellEnd  i32.ge_u  br_if $onesDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  i32.load8_s  i32x4.splat
            f32x4.convert_i32x4_s
            local.get $zp  f32x4.sub  local.get $s  f32x4.mul
            f32x4.extract_lane 0  f32.store
            local.get $i  i32.const 1  i32.add  local.set $i
            br $ones
          end
        end
        br $cellLoop
      end
    end)

  ;; E4M3 codes, no zero point: ŵ = value(q) · s
  (func (export "reconFp8")
    (param $q i32) (param $a i32) (param $i i32) (param $end i32) (param $cellLen i32) (param $scalePtr i32) (param $zpPtr i32)
    (local $cell i32) (local $cellEnd i32) (local $s v128) (local $zp v128) (local $code v128) (local $mag v128)
    block $done
      loop $cellLoop
        local.get $i  local.get $end  i32.ge_u  br_if $done
        ;; cell = i / cellLen; cellEnd = min(end, (cell + 1) · cellLen)
        local.get $i  local.get $cellLen  i32.div_u  local.tee $cell  i32.const 1  i32.add  local.get $cellLen  i32.mul  local.set $cellEnd
        local.get $cellEnd  local.get $end  local.get $cellEnd  local.get $end  i32.lt_u  select  local.set $cellEnd
        local.get $scalePtr  local.get $cell  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        ;; four codes at a time
        block $foursDone
          loop $fours
            local.get $i  i32.const 4  i32.add  local.get $cellEnd  i32.gt_u  br_if $foursDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  v128.load32_zero  i16x8.extend_low_i8x16_u  i32x4.extend_low_i16x8_u
            ;; E4M3 code → float32: normal (exponent field ≠ 0) by moving the bits into place and adding
            ;; the exponent bias difference (127 − 7) << 23; subnormal as mantissa · 2^-9; then the sign bit
            local.tee $code  v128.const i32x4 0x7f 0x7f 0x7f 0x7f  v128.and  local.set $mag
            local.get $mag  i32.const 20  i32x4.shl  v128.const i32x4 0x3c000000 0x3c000000 0x3c000000 0x3c000000  i32x4.add
            local.get $mag  v128.const i32x4 7 7 7 7  v128.and  f32x4.convert_i32x4_s
            v128.const i32x4 0x3b000000 0x3b000000 0x3b000000 0x3b000000  f32x4.mul  ;; × 2^-9
            local.get $mag  v128.const i32x4 7 7 7 7  i32x4.gt_s  v128.bitselect
            local.get $code  v128.const i32x4 0x80 0x80 0x80 0x80  v128.and  i32.const 24  i32x4.shl  v128.or
            local.get $s  f32x4.mul
            v128.store
            local.get $i  i32.const 4  i32.add  local.set $i
            br $fours
          end
        end
        ;; the rest of the cell one at a time, through the same vector code
        block $onesDone
          loop $ones
            local.get $i  local.get $cellEnd  i32.ge_u  br_if $onesDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  i32.load8_u  i32x4.splat
            ;; E4M3 code → float32: normal (exponent field ≠ 0) by moving the bits into place and adding
            ;; the exponent bias difference (127 − 7) << 23; subnormal as mantissa · 2^-9; then the sign bit
            local.tee $code  v128.const i32x4 0x7f 0x7f 0x7f 0x7f  v128.and  local.set $mag
            local.get $mag  i32.const 20  i32x4.shl  v128.const i32x4 0x3c000000 0x3c000000 0x3c000000 0x3c000000  i32x4.add
            local.get $mag  v128.const i32x4 7 7 7 7  v128.and  f32x4.convert_i32x4_s
            v128.const i32x4 0x3b000000 0x3b000000 0x3b000000 0x3b000000  f32x4.mul  ;; × 2^-9
            local.get $mag  v128.const i32x4 7 7 7 7  i32x4.gt_s  v128.bitselect
            local.get $code  v128.const i32x4 0x80 0x80 0x80 0x80  v128.and  i32.const 24  i32x4.shl  v128.or
            local.get $s  f32x4.mul
            f32x4.extract_lane 0  f32.store
            local.get $i  i32.const 1  i32.add  local.set $i
            br $ones
          end
        end
        br $cellLoop
      end
    end)

  ;; E4M3 codes with zero points: ŵ = (value(q) − value(zp)) · s
  (func (export "reconFp8Zp")
    (param $q i32) (param $a i32) (param $i i32) (param $end i32) (param $cellLen i32) (param $scalePtr i32) (param $zpPtr i32)
    (local $cell i32) (local $cellEnd i32) (local $s v128) (local $zp v128) (local $code v128) (local $mag v128)
    block $done
      loop $cellLoop
        local.get $i  local.get $end  i32.ge_u  br_if $done
        ;; cell = i / cellLen; cellEnd = min(end, (cell + 1) · cellLen)
        local.get $i  local.get $cellLen  i32.div_u  local.tee $cell  i32.const 1  i32.add  local.get $cellLen  i32.mul  local.set $cellEnd
        local.get $cellEnd  local.get $end  local.get $cellEnd  local.get $end  i32.lt_u  select  local.set $cellEnd
        local.get $scalePtr  local.get $cell  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $s
        local.get $zpPtr  local.get $cell  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat  local.set $zp
        ;; four codes at a time
        block $foursDone
          loop $fours
            local.get $i  i32.const 4  i32.add  local.get $cellEnd  i32.gt_u  br_if $foursDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  v128.load32_zero  i16x8.extend_low_i8x16_u  i32x4.extend_low_i16x8_u
            ;; E4M3 code → float32: normal (exponent field ≠ 0) by moving the bits into place and adding
            ;; the exponent bias difference (127 − 7) << 23; subnormal as mantissa · 2^-9; then the sign bit
            local.tee $code  v128.const i32x4 0x7f 0x7f 0x7f 0x7f  v128.and  local.set $mag
            local.get $mag  i32.const 20  i32x4.shl  v128.const i32x4 0x3c000000 0x3c000000 0x3c000000 0x3c000000  i32x4.add
            local.get $mag  v128.const i32x4 7 7 7 7  v128.and  f32x4.convert_i32x4_s
            v128.const i32x4 0x3b000000 0x3b000000 0x3b000000 0x3b000000  f32x4.mul  ;; × 2^-9
            local.get $mag  v128.const i32x4 7 7 7 7  i32x4.gt_s  v128.bitselect
            local.get $code  v128.const i32x4 0x80 0x80 0x80 0x80  v128.and  i32.const 24  i32x4.shl  v128.or
            local.get $zp  f32x4.sub  local.get $s  f32x4.mul
            v128.store
            local.get $i  i32.const 4  i32.add  local.set $i
            br $fours
          end
        end
        ;; the rest of the cell one at a time, through the same vector code
        block $onesDone
          loop $ones
            local.get $i  local.get $cellEnd  i32.ge_u  br_if $onesDone
            local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
            local.get $q  local.get $i  i32.add  i32.load8_u  i32x4.splat
            ;; E4M3 code → float32: normal (exponent field ≠ 0) by moving the bits into place and adding
            ;; the exponent bias difference (127 − 7) << 23; subnormal as mantissa · 2^-9; then the sign bit
            local.tee $code  v128.const i32x4 0x7f 0x7f 0x7f 0x7f  v128.and  local.set $mag
            local.get $mag  i32.const 20  i32x4.shl  v128.const i32x4 0x3c000000 0x3c000000 0x3c000000 0x3c000000  i32x4.add
            local.get $mag  v128.const i32x4 7 7 7 7  v128.and  f32x4.convert_i32x4_s
            v128.const i32x4 0x3b000000 0x3b000000 0x3b000000 0x3b000000  f32x4.mul  ;; × 2^-9
            local.get $mag  v128.const i32x4 7 7 7 7  i32x4.gt_s  v128.bitselect
            local.get $code  v128.const i32x4 0x80 0x80 0x80 0x80  v128.and  i32.const 24  i32x4.shl  v128.or
            local.get $zp  f32x4.sub  local.get $s  f32x4.mul
            f32x4.extract_lane 0  f32.store
            local.get $i  i32.const 1  i32.add  local.set $i
            br $ones
          end
        end
        br $cellLoop
      end
    end)

  ;; -------------------------------------------------------------------------------------------------------
  ;; Sums of one block: for x[0, n), a[0, n) (n a multiple of 4), two elements at a time in float64:
  ;;   r = x, w = ŵ (both promoted, exact), e = r − w; Σr², Σw², Σe², Σr·w; min e, max e;
  ;;   out = fround(e) of all four (what the histogram bins).
  ;; Element i goes to lane i mod 4 of every sum (elements 0,1 to the first f64x2, 2,3 to the second), the
  ;; order the JS engine adds in, so results do not depend on where blocks start.
  ;; Nothing is masked: a non-finite e makes its lane of Σe² NaN or +Inf (a sum of squares of finite float32
  ;; values cannot overflow), which tells the caller to redo the block in JS, leaving those pairs out.
  ;; acc: f64 slots Σr² [0..3], Σŵ² [4..7], Σe² [8..11], Σr·ŵ [12..15], min e [16, 17], max e [18, 19]
  ;; (byte offsets ×8), read at the start and written back at the end.
  ;; -------------------------------------------------------------------------------------------------------
  (func (export "sums") (param $x i32) (param $a i32) (param $out i32) (param $n i32) (param $acc i32)
    (local $end i32) (local $r v128) (local $w v128) (local $e v128) (local $min v128) (local $max v128)
    (local $e01 v128)
    (local $ref01 v128) (local $ref23 v128) (local $approx01 v128) (local $approx23 v128)
    (local $err01 v128) (local $err23 v128) (local $dot01 v128) (local $dot23 v128)
    local.get $acc  v128.load offset=0    local.set $ref01
    local.get $acc  v128.load offset=16   local.set $ref23
    local.get $acc  v128.load offset=32   local.set $approx01
    local.get $acc  v128.load offset=48   local.set $approx23
    local.get $acc  v128.load offset=64   local.set $err01
    local.get $acc  v128.load offset=80   local.set $err23
    local.get $acc  v128.load offset=96   local.set $dot01
    local.get $acc  v128.load offset=112  local.set $dot23
    local.get $acc  v128.load offset=128  local.set $min
    local.get $acc  v128.load offset=144  local.set $max
    local.get $x  local.get $n  i32.const 2  i32.shl  i32.add  local.set $end
    block $done
      loop $four
        local.get $x  local.get $end  i32.ge_u  br_if $done
        local.get $out
        ;; elements 0, 1
        local.get $x  v128.load64_zero offset=0  f64x2.promote_low_f32x4  local.set $r
        local.get $a  v128.load64_zero offset=0  f64x2.promote_low_f32x4  local.set $w
        local.get $r  local.get $w  f64x2.sub  local.set $e
        local.get $min  local.get $e  f64x2.pmin  local.set $min
        local.get $max  local.get $e  f64x2.pmax  local.set $max
        local.get $ref01     local.get $r  local.get $r  f64x2.mul  f64x2.add  local.set $ref01
        local.get $approx01  local.get $w  local.get $w  f64x2.mul  f64x2.add  local.set $approx01
        local.get $err01     local.get $e  local.get $e  f64x2.mul  f64x2.add  local.set $err01
        local.get $dot01     local.get $r  local.get $w  f64x2.mul  f64x2.add  local.set $dot01
        local.get $e  f32x4.demote_f64x2_zero  local.set $e01
        local.get $e01
        ;; elements 2, 3
        local.get $x  v128.load64_zero offset=8  f64x2.promote_low_f32x4  local.set $r
        local.get $a  v128.load64_zero offset=8  f64x2.promote_low_f32x4  local.set $w
        local.get $r  local.get $w  f64x2.sub  local.set $e
        local.get $min  local.get $e  f64x2.pmin  local.set $min
        local.get $max  local.get $e  f64x2.pmax  local.set $max
        local.get $ref23     local.get $r  local.get $r  f64x2.mul  f64x2.add  local.set $ref23
        local.get $approx23  local.get $w  local.get $w  f64x2.mul  f64x2.add  local.set $approx23
        local.get $err23     local.get $e  local.get $e  f64x2.mul  f64x2.add  local.set $err23
        local.get $dot23     local.get $r  local.get $w  f64x2.mul  f64x2.add  local.set $dot23
        local.get $e  f32x4.demote_f64x2_zero
        ;; the four float32 errors: the low halves of both demotions
        i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
        v128.store
        local.get $x  i32.const 16  i32.add  local.set $x
        local.get $a  i32.const 16  i32.add  local.set $a
        local.get $out  i32.const 16  i32.add  local.set $out
        br $four
      end
    end
    local.get $acc  local.get $ref01     v128.store offset=0
    local.get $acc  local.get $ref23     v128.store offset=16
    local.get $acc  local.get $approx01  v128.store offset=32
    local.get $acc  local.get $approx23  v128.store offset=48
    local.get $acc  local.get $err01     v128.store offset=64
    local.get $acc  local.get $err23     v128.store offset=80
    local.get $acc  local.get $dot01     v128.store offset=96
    local.get $acc  local.get $dot23     v128.store offset=112
    local.get $acc  local.get $min       v128.store offset=128
    local.get $acc  local.get $max       v128.store offset=144)

  ;; -------------------------------------------------------------------------------------------------------
  ;; Histogram counts of the float32 errors e[0, n) (n a multiple of 4, at most the scratch's size in bytes),
  ;; every e finite. params: e, n, low, width, last (f64), pairs, scratch.
  ;; Two loops, as a histogram must be written:
  ;; 1. the bin of every element, ⌊clamp((e − low) / width, 0, last)⌋ in float64 (the JS engine's quotient),
  ;;    paired (elements 0 and 2, 1 and 3 of every four) into 64 · first + second, written as u16 to scratch
  ;;    (the f64 integer plus 2^52 has it in its low bytes);
  ;; 2. one increment per pair in a 64 × 64 table of u32 counters (`pairs`; a bin's count is its row's sum
  ;;    plus its column's).
  ;; Incrementing a counter whose address comes out of a long float computation in the same loop runs several
  ;; times slower (the CPU cannot tell early whether consecutive increments hit the same counter); counting
  ;; pairs halves the increments.
  ;; -------------------------------------------------------------------------------------------------------
  (func (export "bin") (param $e i32) (param $n i32) (param $low f64) (param $width f64) (param $last f64) (param $pairs i32) (param $scratch i32)
    (local $end i32) (local $lowv v128) (local $widthv v128) (local $lastv v128) (local $zero v128) (local $t v128)
    (local $p i32) (local $addr i32)
    local.get $low  f64x2.splat  local.set $lowv
    local.get $width  f64x2.splat  local.set $widthv
    local.get $last  f64x2.splat  local.set $lastv
    f64.const 0  f64x2.splat  local.set $zero
    local.get $e  local.get $n  i32.const 2  i32.shl  i32.add  local.set $end
    local.get $scratch  local.set $p
    block $indexed
      loop $four
        local.get $e  local.get $end  i32.ge_u  br_if $indexed
        local.get $p
        ;; bins of elements 0, 1, times 64
        local.get $e  v128.load64_zero offset=0  f64x2.promote_low_f32x4  local.get $lowv  f64x2.sub  local.get $widthv  f64x2.div
        local.get $zero  f64x2.pmax  local.get $lastv  f64x2.pmin  f64x2.floor
        f64.const 64  f64x2.splat  f64x2.mul  local.set $t
        ;; plus the bins of elements 2, 3, plus 2^52
        local.get $e  v128.load64_zero offset=8  f64x2.promote_low_f32x4  local.get $lowv  f64x2.sub  local.get $widthv  f64x2.div
        local.get $zero  f64x2.pmax  local.get $lastv  f64x2.pmin  f64x2.floor
        f64.const 0x1p52  f64x2.splat  f64x2.add  local.get $t  f64x2.add
        ;; the two pair indices (the low 16 bits of each f64) into one 32-bit lane, stored to scratch
        local.tee $t  local.get $t  i8x16.shuffle 0 1 8 9 0 0 0 0 0 0 0 0 0 0 0 0
        v128.store32_lane 0
        local.get $e  i32.const 16  i32.add  local.set $e
        local.get $p  i32.const 4  i32.add  local.set $p
        br $four
      end
    end
    ;; n / 2 pair indices of 2 bytes: pairs[index] += 1
    local.get $scratch  local.get $n  i32.add  local.set $end
    local.get $scratch  local.set $p
    block $counted
      loop $two
        local.get $p  local.get $end  i32.ge_u  br_if $counted
        local.get $pairs  local.get $p  i32.load16_u offset=0  i32.const 2  i32.shl  i32.add  local.tee $addr
        local.get $addr  i32.load  i32.const 1  i32.add  i32.store
        local.get $pairs  local.get $p  i32.load16_u offset=2  i32.const 2  i32.shl  i32.add  local.tee $addr
        local.get $addr  i32.load  i32.const 1  i32.add  i32.store
        local.get $p  i32.const 4  i32.add  local.set $p
        br $two
      end
    end)

  ;; -------------------------------------------------------------------------------------------------------
  ;; FP8 E4M3 per tensor, symmetric, quantized and dequantized in one step (what quantizeRtn then
  ;; dequantizeRtn give, without the codes): a[i] = e4m3(clamp(v, ±448)) · s for x[i, end), with
  ;;   v = x / s   f32x4.div: the correctly rounded float32 quotient, which is torch's float32 `x / scale` (and
  ;;               what the JS path's fround(x · (1/s)) equals, see quant/rtn/jsEngine.ts)
  ;;   v = bf16(v) when the arithmetic is bf16
  ;; then the E4M3 rounding, to nearest, ties to even: normal values (|v| ≥ 2^-6) keep 3 significand bits
  ;; (integer round-to-nearest-even on the float32 bits); subnormal ones are multiples of 2^-9. Clamping first
  ;; is the saturating cast (nothing within ±448 rounds beyond it). x must hold no NaN.
  ;; params: x, a, i, end, scale (f32).
  ;; -------------------------------------------------------------------------------------------------------

  ;; bf16 arithmetic: v = bf16(x / s)
  (func (export "fp8TensorBF16") (param $x i32) (param $a i32) (param $i i32) (param $end i32) (param $scale f32)
    (local $s v128) (local $v v128) (local $u v128)
    local.get $scale  f32x4.splat  local.set $s
    block $foursDone
      loop $fours
        local.get $i  i32.const 4  i32.add  local.get $end  i32.gt_u  br_if $foursDone
        local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
        local.get $x  local.get $i  i32.const 2  i32.shl  i32.add  v128.load
        local.get $s  f32x4.div
        ;; bf16: keep 7 significand bits, round to nearest even on the bits
        local.tee $u  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
        local.get $u  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
        v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
        ;; clamp to ±448 first: the saturating cast
        f32.const -448  f32x4.splat  f32x4.pmax  f32.const 448  f32x4.splat  f32x4.pmin  local.set $v
        ;; subnormal E4M3: a multiple of 2^-9, nearest (ties to even) of v · 2^9; both scalings exact
        local.get $v  f32.const 512  f32x4.splat  f32x4.mul  f32x4.nearest  f32.const 0x1p-9  f32x4.splat  f32x4.mul
        ;; normal E4M3: keep 3 significand bits, round to nearest even on the bits
        local.get $v
        local.tee $u  v128.const i32x4 0x7ffff 0x7ffff 0x7ffff 0x7ffff  i32x4.add
        local.get $u  i32.const 20  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
        v128.const i32x4 0xfff00000 0xfff00000 0xfff00000 0xfff00000  v128.and
        ;; the subnormal result where |v| < 2^-6, the normal one elsewhere; then × s
        local.get $v  f32x4.abs  f32.const 0x1p-6  f32x4.splat  f32x4.lt  v128.bitselect
        local.get $s  f32x4.mul
        v128.store
        local.get $i  i32.const 4  i32.add  local.set $i
        br $fours
      end
    end
    block $onesDone
      loop $ones
        local.get $i  local.get $end  i32.ge_u  br_if $onesDone
        local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
        local.get $x  local.get $i  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat
        local.get $s  f32x4.div
        ;; bf16: keep 7 significand bits, round to nearest even on the bits
        local.tee $u  v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff  i32x4.add
        local.get $u  i32.const 16  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
        v128.const i32x4 0xffff0000 0xffff0000 0xffff0000 0xffff0000  v128.and
        ;; clamp to ±448 first: the saturating cast
        f32.const -448  f32x4.splat  f32x4.pmax  f32.const 448  f32x4.splat  f32x4.pmin  local.set $v
        ;; subnormal E4M3: a multiple of 2^-9, nearest (ties to even) of v · 2^9; both scalings exact
        local.get $v  f32.const 512  f32x4.splat  f32x4.mul  f32x4.nearest  f32.const 0x1p-9  f32x4.splat  f32x4.mul
        ;; normal E4M3: keep 3 significand bits, round to nearest even on the bits
        local.get $v
        local.tee $u  v128.const i32x4 0x7ffff 0x7ffff 0x7ffff 0x7ffff  i32x4.add
        local.get $u  i32.const 20  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
        v128.const i32x4 0xfff00000 0xfff00000 0xfff00000 0xfff00000  v128.and
        ;; the subnormal result where |v| < 2^-6, the normal one elsewhere; then × s
        local.get $v  f32x4.abs  f32.const 0x1p-6  f32x4.splat  f32x4.lt  v128.bitselect
        local.get $s  f32x4.mul
        f32x4.extract_lane 0  f32.store
        local.get $i  i32.const 1  i32.add  local.set $i
        br $ones
      end
    end)

  ;; float32 arithmetic: v = x / s
  (func (export "fp8TensorF32") (param $x i32) (param $a i32) (param $i i32) (param $end i32) (param $scale f32)
    (local $s v128) (local $v v128) (local $u v128)
    local.get $scale  f32x4.splat  local.set $s
    block $foursDone
      loop $fours
        local.get $i  i32.const 4  i32.add  local.get $end  i32.gt_u  br_if $foursDone
        local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
        local.get $x  local.get $i  i32.const 2  i32.shl  i32.add  v128.load
        local.get $s  f32x4.div
        ;; clamp to ±448 first: the saturating cast
        f32.const -448  f32x4.splat  f32x4.pmax  f32.const 448  f32x4.splat  f32x4.pmin  local.set $v
        ;; subnormal E4M3: a multiple of 2^-9, nearest (ties to even) of v · 2^9; both scalings exact
        local.get $v  f32.const 512  f32x4.splat  f32x4.mul  f32x4.nearest  f32.const 0x1p-9  f32x4.splat  f32x4.mul
        ;; normal E4M3: keep 3 significand bits, round to nearest even on the bits
        local.get $v
        local.tee $u  v128.const i32x4 0x7ffff 0x7ffff 0x7ffff 0x7ffff  i32x4.add
        local.get $u  i32.const 20  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
        v128.const i32x4 0xfff00000 0xfff00000 0xfff00000 0xfff00000  v128.and
        ;; the subnormal result where |v| < 2^-6, the normal one elsewhere; then × s
        local.get $v  f32x4.abs  f32.const 0x1p-6  f32x4.splat  f32x4.lt  v128.bitselect
        local.get $s  f32x4.mul
        v128.store
        local.get $i  i32.const 4  i32.add  local.set $i
        br $fours
      end
    end
    block $onesDone
      loop $ones
        local.get $i  local.get $end  i32.ge_u  br_if $onesDone
        local.get $a  local.get $i  i32.const 2  i32.shl  i32.add
        local.get $x  local.get $i  i32.const 2  i32.shl  i32.add  f32.load  f32x4.splat
        local.get $s  f32x4.div
        ;; clamp to ±448 first: the saturating cast
        f32.const -448  f32x4.splat  f32x4.pmax  f32.const 448  f32x4.splat  f32x4.pmin  local.set $v
        ;; subnormal E4M3: a multiple of 2^-9, nearest (ties to even) of v · 2^9; both scalings exact
        local.get $v  f32.const 512  f32x4.splat  f32x4.mul  f32x4.nearest  f32.const 0x1p-9  f32x4.splat  f32x4.mul
        ;; normal E4M3: keep 3 significand bits, round to nearest even on the bits
        local.get $v
        local.tee $u  v128.const i32x4 0x7ffff 0x7ffff 0x7ffff 0x7ffff  i32x4.add
        local.get $u  i32.const 20  i32x4.shr_u  v128.const i32x4 1 1 1 1  v128.and  i32x4.add
        v128.const i32x4 0xfff00000 0xfff00000 0xfff00000 0xfff00000  v128.and
        ;; the subnormal result where |v| < 2^-6, the normal one elsewhere; then × s
        local.get $v  f32x4.abs  f32.const 0x1p-6  f32x4.splat  f32x4.lt  v128.bitselect
        local.get $s  f32x4.mul
        f32x4.extract_lane 0  f32.store
        local.get $i  i32.const 1  i32.add  local.set $i
        br $ones
      end
    end)

  ;; Min and max of x[0, n) (n a multiple of 4) folded into the f32 pair at `out` (NaN skipped: pmin / pmax
  ;; keep the accumulator when v is NaN); returns 1 if some value is NaN. params: x, n, out.
  (func (export "minMax") (param $x i32) (param $n i32) (param $out i32) (result i32)
    (local $end i32) (local $v v128) (local $min v128) (local $max v128) (local $nan v128)
    local.get $out  f32.load offset=0  f32x4.splat  local.set $min
    local.get $out  f32.load offset=4  f32x4.splat  local.set $max
    local.get $x  local.get $n  i32.const 2  i32.shl  i32.add  local.set $end
    block $done
      loop $four
        local.get $x  local.get $end  i32.ge_u  br_if $done
        local.get $x  v128.load  local.set $v
        local.get $nan  local.get $v  local.get $v  f32x4.ne  v128.or  local.set $nan
        ;; pmin(min, v) = v < min ? v : min: a NaN v never replaces
        local.get $min  local.get $v  f32x4.pmin  local.set $min
        local.get $max  local.get $v  f32x4.pmax  local.set $max
        local.get $x  i32.const 16  i32.add  local.set $x
        br $four
      end
    end
    local.get $out
    local.get $min  f32x4.extract_lane 0  local.get $min  f32x4.extract_lane 1  f32.min
    local.get $min  f32x4.extract_lane 2  f32.min  local.get $min  f32x4.extract_lane 3  f32.min
    f32.store offset=0
    local.get $out
    local.get $max  f32x4.extract_lane 0  local.get $max  f32x4.extract_lane 1  f32.max
    local.get $max  f32x4.extract_lane 2  f32.max  local.get $max  f32x4.extract_lane 3  f32.max
    f32.store offset=4
    local.get $nan
    v128.any_true)

  ;; bfloat16 → float32: the 16 bits moved to the top. params: src (2n bytes), dst, n (a multiple of 8).
  (func (export "bf16ToF32") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32) (local $v v128)
    local.get $src  local.get $n  i32.const 1  i32.shl  i32.add  local.set $end
    block $done
      loop $eight
        local.get $src  local.get $end  i32.ge_u  br_if $done
        local.get $src  v128.load  local.set $v
        local.get $dst  local.get $v  i32x4.extend_low_i16x8_u   i32.const 16  i32x4.shl  v128.store offset=0
        local.get $dst  local.get $v  i32x4.extend_high_i16x8_u  i32.const 16  i32x4.shl  v128.store offset=16
        local.get $src  i32.const 16  i32.add  local.set $src
        local.get $dst  i32.const 32  i32.add  local.set $dst
        br $eight
      end
    end)
)
