import { IsInt, IsPositive, IsString, Length } from 'class-validator';

export class CreateOrderDto {
  @IsString()
  @Length(1, 100)
  customerId!: string;

  @IsInt()
  @IsPositive()
  amountCents!: number;
}
