; mbr-checksum.asm - a 512-byte real-mode MBR test program for chr-vmm (nasm -f bin).
;
; The BIOS loads it at 0000:7C00 and jumps to it with DL = boot drive. It:
;   1. programs COM1 (I/O 0x3F8) directly: 115200 baud, 8N1, FIFOs on;
;   2. prints "MBR-CHECKSUM start";
;   3. reads sectors 1..N of the boot drive with INT 13h AH=42h (extended read, DL as passed in),
;      64 sectors (32 KiB) per call into 0000:8000;
;   4. computes 32-bit FNV-1a over all bytes of those sectors, in disk order:
;        h = 0x811C9DC5; for each byte b: h = (h XOR b) * 0x01000193 mod 2^32;
;   5. prints "MBR-CHECKSUM sectors=<N in decimal> sum=<h as 8 lowercase hex digits>",
;      or "MBR-CHECKSUM error=<AH as 2 lowercase hex digits> lba=<decimal>" if a read fails;
;   6. halts for good (cli; hlt in a loop). It has no way to power the machine off.
; Every line ends with CR LF. Nothing is printed through the BIOS.
;
; N is the little-endian dword at byte offset 0x1B0 of this sector (SECTORS_FIELD below); the
; disk builder writes it there. Bytes 0x1B8..0x1FD (disk signature and partition table) are zero,
; 0x1FE..0x1FF hold the boot signature 55 AA.
;
; It uses 32-bit registers (operand-size prefixes in real mode), so it needs a 386 or later.

        bits 16
        org 0x7C00

COM1            equ 0x3F8
BUF_SEG         equ 0x0000
BUF_OFF         equ 0x8000          ; 0x8000..0xFFFF: 32 KiB, no 64 KiB DMA boundary inside
CHUNK           equ 64              ; sectors per INT 13h call
FNV_OFFSET      equ 0x811C9DC5
FNV_PRIME       equ 0x01000193

start:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7C00
        jmp 0x0000:.cs_ok           ; some BIOSes enter at 07C0:0000
.cs_ok:
        sti
        cld
        mov [drive], dl

        ; --- COM1: 115200 8N1, from the table uart_init ---
        mov si, uart_init
        mov cx, (uart_init_end - uart_init) / 2
        mov dh, COM1 >> 8
.uart:
        lodsw                       ; AL = low byte of the port, AH = value
        mov dl, al
        mov al, ah
        out dx, al
        loop .uart

        mov si, msg_start
        call puts

        ; --- read and checksum sectors 1..N ---
        mov ebx, FNV_OFFSET         ; EBX = running hash
        mov ecx, [sectors_field]    ; ECX = sectors left
.next_chunk:
        jecxz .done
        mov eax, CHUNK
        cmp ecx, eax
        jae .have_count
        mov eax, ecx
.have_count:
        mov [dap_count], ax
        push ecx
        push ebx
        mov si, dap
        mov dl, [drive]
        mov ah, 0x42
        int 0x13
        pop ebx
        pop ecx
        jc .read_error
        movzx eax, word [dap_count] ; sectors this call (the BIOS leaves it as asked on success)
        sub ecx, eax
        add [dap_lba], eax
        shl ax, 9                   ; bytes: at most 64 * 512 = 32768, fits in 16 bits
        mov di, ax
        mov si, BUF_OFF
.hash_byte:
        movzx eax, byte [si]
        xor ebx, eax
        imul ebx, ebx, FNV_PRIME
        inc si
        dec di
        jnz .hash_byte
        jmp .next_chunk

.done:
        mov si, msg_prefix
        call puts
        mov si, msg_sectors
        call puts
        mov eax, [sectors_field]
        call put_dec
        mov si, msg_sum
        call puts
        mov eax, ebx
        mov cx, 8
        call put_hex
        mov si, msg_crlf
        call puts
        jmp halt

.read_error:
        mov bl, ah                  ; AH = INT 13h status
        mov si, msg_prefix
        call puts
        mov si, msg_error
        call puts
        movzx eax, bl
        rol eax, 24                 ; put_hex prints from the top nibble down
        mov cx, 2
        call put_hex
        mov si, msg_lba
        call puts
        mov eax, [dap_lba]
        call put_dec
        mov si, msg_crlf
        call puts

halt:
        cli
        hlt
        jmp halt

; putc: AL -> COM1, waiting for the transmit holding register to be empty
putc:
        push dx
        push ax
        mov dx, COM1 + 5
.wait:
        in al, dx
        test al, 0x20
        jz .wait
        pop ax
        mov dx, COM1
        out dx, al
        pop dx
        ret

; puts: NUL-terminated string at DS:SI
puts:
        lodsb
        test al, al
        jz .end
        call putc
        jmp puts
.end:
        ret

; put_hex: the top CX nibbles of EAX, most significant first, lowercase
put_hex:
        rol eax, 4
        push eax
        and al, 0x0F
        add al, '0'
        cmp al, '9'
        jbe .digit
        add al, 'a' - '0' - 10
.digit:
        call putc
        pop eax
        loop put_hex
        ret

; put_dec: EAX as unsigned decimal
put_dec:
        push ebx
        mov ebx, 10
        xor cx, cx
.div:
        xor edx, edx
        div ebx
        push dx
        inc cx
        test eax, eax
        jnz .div
.out:
        pop ax
        add al, '0'
        call putc
        loop .out
        pop ebx
        ret

uart_init:                          ; (port, value) pairs, in this order
        db (COM1 + 1) & 0xFF, 0x00  ; IER = 0: no interrupts
        db (COM1 + 3) & 0xFF, 0x80  ; LCR: DLAB = 1
        db (COM1 + 0) & 0xFF, 0x01  ; divisor low = 1 (115200 baud)
        db (COM1 + 1) & 0xFF, 0x00  ; divisor high = 0
        db (COM1 + 3) & 0xFF, 0x03  ; LCR: 8 data bits, no parity, 1 stop bit, DLAB = 0
        db (COM1 + 2) & 0xFF, 0xC7  ; FCR: enable and clear the FIFOs
        db (COM1 + 4) & 0xFF, 0x03  ; MCR: DTR + RTS
uart_init_end:

msg_start:   db 13, 10, "MBR-CHECKSUM start", 13, 10, 0 ; own line even after BIOS text
msg_prefix:  db "MBR-CHECKSUM ", 0
msg_sectors: db "sectors=", 0
msg_sum:     db " sum=", 0
msg_error:   db "error=", 0
msg_lba:     db " lba=", 0
msg_crlf:    db 13, 10, 0

dap:                                ; INT 13h AH=42h disk address packet
        db 0x10, 0                  ; size, reserved
dap_count:
        dw 0                        ; sectors to read
        dw BUF_OFF                  ; buffer offset
        dw BUF_SEG                  ; buffer segment
dap_lba:
        dq 1                        ; LBA of the next read: starts at 1, the sector after this one
drive:  db 0

        times 0x1B0 - ($ - $$) db 0 ; fails to assemble if the code grows into the fields
sectors_field:
        dd 0                        ; 0x1B0: N, the number of sectors to read (set by make-disk.sh)
        times 0x1FE - ($ - $$) db 0 ; 0x1B4..0x1FD: zero (no disk signature, empty partition table)
        dw 0xAA55                   ; 0x1FE: boot signature
